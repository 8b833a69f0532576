# SegFormer MiT-B0 (Cityscapes, 19 classes) with a MoASE adapter in every MiT block.
# Inherits mmseg's shipped SegFormer config; only the backbone type and the adapter
# options are ours. `init_cfg=None` drops mmseg's ImageNet download URL (there is no
# network at run time): the source weights come from the checkpoint you pass.
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    './moase_adapter.py'
]

model = dict(
    backbone=dict(
        type='MixVisionTransformerMoASE',
        init_cfg=None,
        moase_cfg={{_base_.moase_cfg}},
        moase_stages=[0, 1, 2, 3],  # stages (0-based) whose blocks get adapters
        moase_bottlenecks=None))  # int, or one value per stage; None = default
