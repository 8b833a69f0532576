# ViDA's adapter warm-up on Cityscapes (train split, mmseg's SegFormer 1024x1024
# training pipeline): the NVlabs MiT-B0 Cityscapes model with ViDA adapters,
# everything but the adapters frozen (BatchNorm statistics included).
#   python tools/warmup_vida.py configs/vida/vida-warmup_mit-b0_cityscapes-1024x1024.py \
#       segformer.b0.1024x1024.city.160k.pth --work-dir work_dirs/vida_warmup_b0
# The released warm-up recipe is not public; length and rate are our choice
# (mmseg's SegFormer rate, a tenth of its schedule) and not run here (no
# Cityscapes on the development machine).
_base_ = '../_base_/models/segformer_mit-b0_nvlabs_vida.py'

max_iters = 16000
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='TrainableGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(trainable='adapters'))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='SourceWeightsHook', checkpoint=None)]
