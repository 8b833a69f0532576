# mmseg's SegFormer-B0 (Cityscapes, 19 classes) for one process on a CPU at small
# image sizes: BatchNorm instead of SyncBN, whole-image inference, no padding at
# test time, no ImageNet download. The head is mmseg's SegformerHead computed with
# its fuse conv before the upsampling (FusedSegformerHead: same weights, equal up
# to float rounding, about a quarter less time per forward; registered by
# mmseg_moase, so a config using this base imports it with `custom_imports`).
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'

model = dict(
    data_preprocessor=dict(size=None),
    backbone=dict(init_cfg=None),
    decode_head=dict(
        type='FusedSegformerHead', norm_cfg=dict(type='BN', requires_grad=True)),
    test_cfg=dict(_delete_=True, mode='whole'))
