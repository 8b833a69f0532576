# ViDA, Cityscapes -> Cityscapes-C (val images, severity 5), 3 rounds of
# Fog/Night/Rain/Snow, SegFormer MiT-B5 with ViDA adapters, 1024x512.
_base_ = [
    '../_base_/models/segformer_mit-b5_nvlabs_vida.py',
    '../_base_/streams/cityscapes-to-cityscapes-c.py',
    '../_base_/methods/vida.py'
]
