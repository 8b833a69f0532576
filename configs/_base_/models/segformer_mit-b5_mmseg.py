# SegFormer MiT-B5 for mmseg's own Cityscapes checkpoints (model zoo
# segformer_mit-b5_8x1_1024x1024_160k_cityscapes_20211206_072934-87a052ec.pth, or
# a file from mmseg's tools/train.py with this config): mmseg's shipped B5
# Cityscapes config as is, i.e. mmseg's SegformerHead (embedding width 256;
# decode_head.convs.* / fusion_conv.* keys) and mmseg's slide inference (crop
# 1024, stride 768, as the NVlabs bases). Only two things change:
# * the head is computed by FusedSegformerHead: same module and keys as
#   SegformerHead, fuse conv before the upsampling (equal up to float rounding,
#   less compute; the NVlabs bases reorder their head the same way);
# * no ImageNet download: the weights come from the source checkpoint.
# The MiT LayerNorms keep mmseg's eps 1e-6, as these weights were trained with.
_base_ = 'mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py'

custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=None),
    decode_head=dict(type='FusedSegformerHead'))
