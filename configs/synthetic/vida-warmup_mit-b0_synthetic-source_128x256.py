# ViDA's adapter warm-up on the synthetic source set: the source model
# (segformer_mit-b0_synthetic-source_128x256.py) with ViDA adapters, everything
# but the adapters frozen (BatchNorm statistics included), trained on the clean
# source images with the source recipe's data pipeline.
#   python tools/warmup_vida.py configs/synthetic/vida-warmup_mit-b0_synthetic-source_128x256.py \
#       work_dirs/synthetic_benchmark/source_model/iter_2250.pth
# (the benchmark runs this as a stage and passes the source model's class weights).
_base_ = [
    './segformer_mit-b0_synthetic-source_128x256.py',
    '../_base_/models/vida_adapter.py'
]
model = dict(backbone={{_base_.vida_backbone}})

max_iters = 300
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='TrainableGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0),
    paramwise_cfg=dict(trainable='adapters'))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='SourceWeightsHook', checkpoint=None)]
