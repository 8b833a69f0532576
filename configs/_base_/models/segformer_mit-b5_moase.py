# SegFormer MiT-B5 (Cityscapes, 19 classes) with a MoASE adapter in every MiT block
# (3+6+40+3 = 52 adapters). Inherits mmseg's shipped B5 Cityscapes config.
_base_ = [
    'mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py',
    './moase_adapter.py'
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(backbone={{_base_.moase_backbone}})
