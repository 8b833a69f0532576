# Cityscapes -> ACDC continual test-time adaptation, MoASE protocol (MoASE, ViDA,
# SVDP): 3 rounds of Fog -> Night -> Rain -> Snow, no reset (docs/PROTOCOL.md).
#
# * ACDC **train** split (400 images per condition, 1920x1080, labels used for
#   scoring only), read by `ACDCDataset` from
#   `data/acdc/rgb_anon/<cond>/train/<sequence>/*_rgb_anon.png` and
#   `data/acdc/gt/<cond>/train/<sequence>/*_gt_labelTrainIds.png`, in sorted path
#   order (the CoTTA code used unsorted directory order); reference images
#   (`*_ref` folders, `*_ref_anon.png`) are skipped. Batch 1, no shuffle.
# * Another data root: --cfg-options ctta_stream.dataloader.dataset.data_root=DIR
#   (the domains inherit it); check the tree first with tools/check_data.py.
# * Test pipeline: the 1920x1080 image is resized to 960x540 (keep ratio); the
#   label is loaded *after* the resize, so it stays 1080x1920 and the logits are
#   resized back to it (mmseg resizes them to `ori_shape`): scoring is at full
#   resolution. The model's slide inference (crop 1024, stride 768) then covers
#   960x540 in one window.
# * CoTTA-style teachers use 14 views: ratios 0.5..2.0 of 960x540, each unflipped
#   and flipped. mmseg 1.x's `Resize(scale_factor=s)` acts on the loaded image,
#   so ratio r is `scale_factor=0.5 * r`. The plain view (ratio 1.0, unflipped) is
#   view 4 (`ctta_plain_view_index`); the method configs of multi-view methods
#   must pass it on as `ctta_method.view_index`: its scale_factor is 0.5, and the
#   scale-1 auto-detection would pick the ratio-2.0 view (the full 1920x1080).
acdc_conditions = ['fog', 'night', 'rain', 'snow']

ctta_base_scale_factor = 0.5  # 1920x1080 -> 960x540
ctta_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=ctta_base_scale_factor, keep_ratio=True),
    # After the resize: labels (and scoring) keep the original 1080x1920.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]

ctta_view_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]  # of 960x540
ctta_tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        # Views in product order: (r0.5, no flip), (r0.5, flip), (r0.75, ...), ...
        transforms=[[
            dict(type='Resize', scale_factor=0.5 * r, keep_ratio=True)
            for r in ctta_view_ratios
        ],
                    [
                        dict(type='RandomFlip', prob=0., direction='horizontal'),
                        dict(type='RandomFlip', prob=1., direction='horizontal')
                    ], [dict(type='LoadAnnotations')],
                    [dict(type='PackSegInputs')]])
]
# Index of ratio 1.0 unflipped in the 14 views above (2 * ratios.index(1.0)).
ctta_plain_view_index = 4

ctta_stream = dict(
    rounds=3,
    domains=[
        dict(
            name=cond,
            dataset=dict(
                data_prefix=dict(
                    img_path=f'rgb_anon/{cond}/train',
                    seg_map_path=f'gt/{cond}/train')))
        for cond in acdc_conditions
    ],
    dataloader=dict(
        batch_size=1,
        num_workers=2,
        persistent_workers=False,
        dataset=dict(
            type='ACDCDataset',
            data_root='data/acdc',
            pipeline=ctta_test_pipeline)),
    tta_pipeline=ctta_tta_pipeline)
ctta_cfg = dict(save_interval=50, progress_interval=30.0)
