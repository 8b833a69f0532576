# mmseg's SegFormer-B0 (Cityscapes, 19 classes) for one process on a CPU at small
# image sizes: BatchNorm instead of SyncBN, whole-image inference, no padding at
# test time, no ImageNet download.
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'

model = dict(
    data_preprocessor=dict(size=None),
    backbone=dict(init_cfg=None),
    decode_head=dict(norm_cfg=dict(type='BN', requires_grad=True)),
    test_cfg=dict(_delete_=True, mode='whole'))
