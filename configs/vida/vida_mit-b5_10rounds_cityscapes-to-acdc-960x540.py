# ViDA, Cityscapes -> ACDC, 10 rounds of Fog/Night/Rain/Snow (CoTTA protocol),
# SegFormer MiT-B5 with the NVlabs Cityscapes weights (or a warm-up checkpoint of
# tools/warmup_vida.py), test images 960x540.
_base_ = [
    '../_base_/models/segformer_mit-b5_nvlabs_vida.py',
    '../_base_/streams/cityscapes-to-acdc_10rounds.py',
    '../_base_/methods/vida.py'
]
