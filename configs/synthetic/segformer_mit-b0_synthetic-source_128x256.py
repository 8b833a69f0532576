# Source model of the synthetic benchmark: SegFormer MiT-B0 trained from scratch on
# the clean synthetic city (Cityscapes layout, 128x256 images) with mmseg's ordinary
# training machinery. Inherits mmseg's SegFormer-B0 Cityscapes config (through the
# CPU model base).
#
# Recipe, chosen by measurement on 2 cores (clean val mIoU; 300 training images
# and mmseg's SegformerHead unless said otherwise):
#   14 classes (the 'extended' class set):
#   128x256 crops, batch 8, 650 it, lr 1e-3, PhotoMetricDistortion   49.7
#   128x128 crops, batch 8, 1000 it, lr 1e-3, PhotoMetricDistortion  48.5
#   128x128 crops, batch 8, 900 it, lr 3e-3, no photometric jitter   50.6
#   128x128 crops, batch 4, 1800 it, lr 3e-3, no photometric jitter  51.6 (~10 min)
#   128x128 crops, batch 8, 800 it, lr 3e-3, no jitter                48.3
#     + no stochastic depth, no head dropout                          51.4
#     + head lr x5                                                    50.2
#   the fused head (same model, ~1/3 less time per iteration):
#   128x128 crops, batch 8, 1200 it (no stochastic depth, dropout)   54.3
#     + 1200 training images                                          55.7
#     + 128x256 crops, batch 4, 1300 it                               54.6
#       + lr 5e-3 (not tried on the 12 classes yet)                   57.3
#     + 128x128 crops, batch 4, 2400 it                               56.6
#   12 classes (the 'benchmark' class set, walls drawn as fences, trucks as buses):
#   128x128 crops, batch 4, 2400 it, 1200 training images      61.5, 61.3 (seed 0)
#   the same, 2250 it, seed 0 (the legacy recipe, until generator 2.2) 61.1
#   + mmseg's PhotoMetricDistortion (shipped since the calibrated
#     conditions; an Intel Xeon, 2 cores)                             57.3
# PhotoMetricDistortion costs ~4 points of clean mIoU in this budget but is what
# every real SegFormer is trained with: without it the model fails on global
# colour shifts, which renormalising with test statistics repairs (NormStat
# +5.3 on the legacy conditions). On the calibrated conditions
# (mmseg_moase/datasets/synthetic_city/calibration.py) it keeps 0.77 / 0.47 /
# ~0.69 / ~0.69 of its clean mIoU on fog / night / rain / snow. Tried and not
# kept: its BatchNorms trained on their running statistics for 400 more
# iterations (to mimic mmseg's SyncBN over 8 large crops): NormStat's gains
# unchanged (fog +1.8, night +6.1 to +7.4, rain +4.9 to +9.6, snow +1.0 to +1.3
# at severities 0.1 to 0.6).
# The from-scratch model underfits (the loss still falls at the end): a higher
# learning rate, no regularisation (colour jitter, stochastic depth, dropout), more
# and smaller steps help. The training length is what the 20-minute budget of the
# whole benchmark leaves.
_base_ = '../_base_/models/segformer_mit-b0_cpu.py'

custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

data_root = 'data/synthetic_city'
crop_size = (128, 128)
max_iters = 2250  # ~10 min on 2 cores (0.25-0.28 s per batch of 4 crops)

# Class-balanced cross-entropy: (median_freq / freq_c) ** 0.5, clipped to
# [0.1, 10], over the training labels of the default data set
# (tools/generate_synthetic_city.py data/synthetic_city; the benchmark computes
# them again from the labels it trains on and says so when they differ). Small
# classes (poles, signs, persons) are otherwise never predicted after a short
# from-scratch training. Stored here so that mmseg's own tools/train.py on this
# config trains the benchmark's model. Classes absent from the data: 1.
source_class_weight = [
    0.3362, 0.8482, 0.3812, 1.0, 1.7611, 1.4936, 1.0, 2.4844, 0.539, 1.3576,
    0.9053, 2.0487, 1.0, 1.1325, 1.0, 0.6074, 1.0, 1.0, 1.0
]
# The model underfits in this budget: no stochastic depth, no dropout before the
# classifier (mmseg's SegFormer default: 0.1 each).
model = dict(
    data_preprocessor=dict(size=crop_size),  # pad training crops
    backbone=dict(drop_path_rate=0.0),
    decode_head=dict(
        dropout_ratio=0.0,
        loss_decode=dict(
            _delete_=True,
            type='WeightedCrossEntropyLoss',
            class_weight=source_class_weight)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(256, 128),
        ratio_range=(0.75, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    # mmseg's photometric augmentation, as every real SegFormer is trained (the
    # legacy recipe, segformer_mit-b0_synthetic-source-legacy_128x256.py, has
    # none): without it global colour shifts are what the model fails on and
    # what renormalising with test statistics repairs, unlike on ACDC.
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=3e-3,
        betas=(0.9, 0.999),
        weight_decay=0.01,
        fused=True),  # one kernel per step: a quarter of the time of the loop
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=50,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
        save_last=True))
randomness = dict(seed=0)  # the same source model on every run
