# MoASE++, Cityscapes -> ACDC, 10 rounds of Fog/Night/Rain/Snow (CoTTA protocol),
# SegFormer MiT-B5 with mmseg's own Cityscapes weights (mmseg's SegformerHead),
# test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b5_mmseg_moase.py',
    '../_base_/streams/cityscapes-to-acdc_10rounds.py',
    '../_base_/methods/moase_pp.py'
]
