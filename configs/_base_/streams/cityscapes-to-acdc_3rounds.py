# Cityscapes -> ACDC continual test-time adaptation, MoASE protocol (MoASE, ViDA,
# SVDP): 3 rounds of Fog -> Night -> Rain -> Snow, no reset (docs/protocol.md).
#
# * ACDC **train** split (400 images per condition, 1920x1080, labels used for
#   scoring only), read by `ACDCDataset` from
#   `data/acdc/rgb_anon/<cond>/train/<sequence>/*_rgb_anon.png` and
#   `data/acdc/gt/<cond>/train/<sequence>/*_gt_labelTrainIds.png`, in sorted path
#   order (the CoTTA code used unsorted directory order); reference images
#   (`*_ref` folders, `*_ref_anon.png`) are skipped. Batch 1, no shuffle.
# * Another data root: --cfg-options ctta_stream.dataloader.dataset.data_root=DIR
#   (the domains inherit it); check the tree first with tools/check_data.py.
# * Pipelines (configs/_base_/streams/half_size_14views.py): 1920x1080 -> 960x540
#   (keep ratio), labels and scoring at 1080x1920; the model's slide inference
#   (crop 1024, stride 768) covers 960x540 in one window. CoTTA-style teachers use
#   14 views (ratios 0.5..2.0 of 960x540, with and without flip); the stream
#   declares their plain view (ratio 1.0, unflipped: view 4) as `plain_view_index`,
#   and the loop passes it to the method.
_base_ = './half_size_14views.py'

acdc_conditions = ['fog', 'night', 'rain', 'snow']

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
            pipeline={{_base_.ctta_test_pipeline}})),
    tta_pipeline={{_base_.ctta_tta_pipeline}},
    plain_view_index={{_base_.ctta_plain_view_index}})
ctta_cfg = dict(save_interval=50, progress_interval=30.0)
