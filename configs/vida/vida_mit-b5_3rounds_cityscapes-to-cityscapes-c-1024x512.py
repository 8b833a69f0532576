# ViDA, Cityscapes -> Cityscapes-C (val images, severity 5), 3 rounds of
# Fog/Night/Rain/Snow, SegFormer MiT-B5 with ViDA adapters, 1024x512.
_base_ = [
    '../_base_/models/segformer_mit-b5_nvlabs_vida.py',
    '../_base_/streams/cityscapes-to-cityscapes-c.py',
    '../_base_/methods/vida.py'
]
# The teacher's views: the plain view (ratio 1.0, unflipped) is resized by 0.5.
ctta_method = dict(view_index={{_base_.ctta_plain_view_index}})
