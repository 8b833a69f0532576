# Pipelines shared by the real-data streams (Cityscapes -> ACDC, Cityscapes ->
# Cityscapes-C): the loaded image (1920x1080 ACDC, 2048x1024 Cityscapes) is halved,
# keeping its ratio, and scored at full resolution; CoTTA-style teachers see 14 views.
#
# * Test pipeline: the label is loaded *after* the resize, so it keeps the original
#   size and the logits are resized back to it (mmseg resizes them to `ori_shape`).
# * Teacher views: ratios 0.5..2.0 of the half-size image, each unflipped and
#   flipped, in product order (r0.5, no flip), (r0.5, flip), (r0.75, ...), ...
#   mmseg 1.x's `Resize(scale_factor=s)` acts on the loaded image, so ratio r is
#   `scale_factor=0.5 * r`. The plain view (ratio 1.0, unflipped) is view 4
#   (`ctta_plain_view_index`), declared once by the streams as
#   `ctta_stream.plain_view_index`: its scale_factor is 0.5, and the scale-1
#   auto-detection would pick the ratio-2.0 view (the full-size image), so the
#   loop refuses to guess for a stream whose test pipeline resizes.
ctta_base_scale_factor = 0.5
ctta_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=ctta_base_scale_factor, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]

ctta_view_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
ctta_tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale_factor=ctta_base_scale_factor * r,
                 keep_ratio=True)
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
