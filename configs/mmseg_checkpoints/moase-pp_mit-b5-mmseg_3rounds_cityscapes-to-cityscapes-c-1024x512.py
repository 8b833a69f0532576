# MoASE++, Cityscapes -> Cityscapes-C (val images, severity 5), 3 rounds of
# Fog/Night/Rain/Snow, SegFormer MiT-B5 with mmseg's own Cityscapes weights
# (mmseg's SegformerHead), 1024x512.
_base_ = [
    '../_base_/models/segformer_mit-b5_mmseg_moase.py',
    '../_base_/streams/cityscapes-to-cityscapes-c.py',
    '../_base_/methods/moase_pp.py'
]
