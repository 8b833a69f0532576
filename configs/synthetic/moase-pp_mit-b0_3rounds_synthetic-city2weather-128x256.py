# MoASE++ on the synthetic city -> Fog/Night/Rain/Snow stream, 3 rounds, MiT-B0
# with a MoASE adapter in every block (the source checkpoint has none: they
# start at 0); MoASE's config with the MoASE++ method.
_base_ = [
    '../_base_/models/segformer_mit-b0_cpu.py', '../_base_/models/moase_adapter.py',
    '../_base_/streams/synthetic_city2weather.py', '../_base_/methods/moase_pp.py'
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)
model = dict(backbone={{_base_.moase_backbone}})
