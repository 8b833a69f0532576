# SegFormer MiT-B0 as the NVlabs release (segformer.b0.1024x1024.city.160k):
# mmseg's shipped B0 Cityscapes config with the original decode head
# (`SegformerOriginalHead`, embedding width 256 as NVlabs B0/B1) and slide
# inference (crop 1024, stride 768). See segformer_mit-b5_nvlabs.py for the
# LayerNorm epsilons.
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py'

custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=None),  # weights come from the source checkpoint
    decode_head=dict(
        type='SegformerOriginalHead',
        channels=256,
        fuse_before_resize=True),  # same weights, less compute at 1/4 res
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
