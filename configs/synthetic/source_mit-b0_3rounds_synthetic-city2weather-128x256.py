# source on the synthetic city -> Fog/Night/Rain/Snow stream, 3 rounds, MiT-B0.
_base_ = [
    '../_base_/models/segformer_mit-b0_cpu.py',
    '../_base_/streams/synthetic_city2weather.py', '../_base_/methods/source.py'
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)
