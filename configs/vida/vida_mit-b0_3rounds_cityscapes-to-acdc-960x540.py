# ViDA, Cityscapes -> ACDC, 3 rounds of Fog/Night/Rain/Snow (MoASE/ViDA protocol),
# SegFormer MiT-B0 with the NVlabs Cityscapes weights (or a warm-up checkpoint of
# tools/warmup_vida.py), test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b0_nvlabs_vida.py',
    '../_base_/streams/cityscapes-to-acdc_3rounds.py',
    '../_base_/methods/vida.py'
]
