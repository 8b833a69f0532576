# SegFormer MiT-B0 (Cityscapes, 19 classes) with a MoASE adapter in every MiT block.
# Inherits mmseg's shipped SegFormer config; only the backbone type and the adapter
# options (moase_adapter.py) are ours.
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    './moase_adapter.py'
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(backbone={{_base_.moase_backbone}})
