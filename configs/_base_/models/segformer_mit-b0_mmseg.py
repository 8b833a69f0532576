# SegFormer MiT-B0 for mmseg's own Cityscapes checkpoints (model zoo
# segformer_mit-b0_8x1_1024x1024_160k_cityscapes_20211208_101857-e7f88502.pth, or
# a file from mmseg's tools/train.py with this config): mmseg's shipped B0
# Cityscapes config with its SegformerHead (width 256) computed by
# FusedSegformerHead and no ImageNet download. See segformer_mit-b5_mmseg.py.
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'

custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=None),
    decode_head=dict(type='FusedSegformerHead'))
