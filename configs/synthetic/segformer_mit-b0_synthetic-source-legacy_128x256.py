# The source recipe of every synthetic table before the calibrated conditions
# (generator 2.2.0): the shipped recipe without mmseg's PhotoMetricDistortion.
# With the legacy conditions (tools/run_synthetic_benchmark.py --conditions
# legacy, which uses this config) it re-makes the earlier tables' source model.
_base_ = './segformer_mit-b0_synthetic-source_128x256.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(256, 128),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
