# MoASE, Cityscapes -> ACDC, 3 rounds of Fog/Night/Rain/Snow (MoASE protocol),
# SegFormer MiT-B0 with mmseg's own Cityscapes weights (mmseg's SegformerHead),
# test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b0_mmseg_moase.py',
    '../_base_/streams/cityscapes-to-acdc_3rounds.py',
    '../_base_/methods/moase.py'
]
# The 14-view teacher: the plain view (ratio 1.0, unflipped) is resized by 0.5.
ctta_method = dict(view_index={{_base_.ctta_plain_view_index}})
