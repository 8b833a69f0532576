# The built-in synthetic benchmark stream: clean synthetic city (source, Cityscapes
# layout) -> Fog -> Night -> Rain -> Snow (ACDC layout), 3 rounds, no reset.
# Data made by tools/generate_synthetic_city.py (128x256 images).
synthetic_data_root = 'data/synthetic_city'

ctta_test_pipeline = [
    dict(type='LoadImageFromFile'),
    # Labels are loaded after any resize: scoring is at the original resolution.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# CoTTA-style teacher views. On this CPU benchmark the teacher uses 3 scales x flip
# (6 views, view 2 = scale 1.0 unflipped) instead of the paper's 7 x 2 = 14, which
# would cost ~25 forward passes per image; the real-data configs use all 14.
ctta_view_scales = [0.75, 1.0, 1.25]
ctta_tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale_factor=r, keep_ratio=True)
            for r in ctta_view_scales
        ],
                    [
                        dict(type='RandomFlip', prob=0., direction='horizontal'),
                        dict(type='RandomFlip', prob=1., direction='horizontal')
                    ], [dict(type='LoadAnnotations')],
                    [dict(type='PackSegInputs')]])
]

ctta_stream = dict(
    rounds=3,
    domains=[
        dict(
            name=cond,
            dataset=dict(
                data_prefix=dict(
                    img_path=f'rgb_anon/{cond}/train',
                    seg_map_path=f'gt/{cond}/train')))
        for cond in ['fog', 'night', 'rain', 'snow']
    ],
    dataloader=dict(
        batch_size=1,
        num_workers=1,
        persistent_workers=False,
        # One data root for every domain: another folder with --cfg-options
        # ctta_stream.dataloader.dataset.data_root=DIR.
        dataset=dict(
            type='ACDCDataset',
            data_root=synthetic_data_root,
            pipeline=ctta_test_pipeline)),
    tta_pipeline=ctta_tta_pipeline,
    plain_view_index=2)  # scale 1.0, unflipped: (0.75, 0.75 flip, 1.0, ...)
ctta_cfg = dict(save_interval=20, progress_interval=15.0)
