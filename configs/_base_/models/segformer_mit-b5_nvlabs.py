# SegFormer MiT-B5 exactly as the NVlabs release (segformer.b5.1024x1024.city.160k,
# Cityscapes, 19 classes): mmseg's shipped B5 Cityscapes config with the original
# decode head (`SegformerOriginalHead`, embedding width 768; mmseg's SegformerHead
# computes something else) and the original's slide inference (crop 1024, stride
# 768). Takes the NVlabs file itself or its conversion
# (tools/convert_segformer_checkpoint.py); either way the CTTA loader gives the
# MiT the original LayerNorm epsilons (1e-5 in the patch embeddings and the
# spatial-reduction norms, 1e-6 elsewhere; mmseg's `norm_cfg` has one eps for all).
_base_ = 'mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py'

custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=None),  # weights come from the source checkpoint
    decode_head=dict(
        type='SegformerOriginalHead',
        channels=768,
        fuse_before_resize=True),  # same weights, less compute at 1/4 res
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
