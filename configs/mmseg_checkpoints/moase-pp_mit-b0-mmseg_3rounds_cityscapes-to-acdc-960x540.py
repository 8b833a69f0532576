# MoASE++, Cityscapes -> ACDC, 3 rounds of Fog/Night/Rain/Snow (MoASE protocol),
# SegFormer MiT-B0 with mmseg's own Cityscapes weights (mmseg's SegformerHead),
# test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b0_mmseg_moase.py',
    '../_base_/streams/cityscapes-to-acdc_3rounds.py',
    '../_base_/methods/moase_pp.py'
]
