# MoASE++, Cityscapes -> ACDC, 3 rounds of Fog/Night/Rain/Snow (MoASE protocol),
# SegFormer MiT-B5 with the NVlabs Cityscapes weights, test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b5_nvlabs_moase.py',
    '../_base_/streams/cityscapes-to-acdc_3rounds.py',
    '../_base_/methods/moase_pp.py'
]
