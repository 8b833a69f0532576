# ViDA on the synthetic city -> Fog/Night/Rain/Snow stream, 3 rounds, MiT-B0 with
# ViDA adapters on every attention projection. Checkpoint: the adapters' warm-up
# (tools/warmup_vida.py with vida-warmup_mit-b0_synthetic-source_128x256.py; the
# benchmark runs it as a stage) or the source model (fresh adapters, output 0).
_base_ = [
    '../_base_/models/segformer_mit-b0_cpu.py', '../_base_/models/vida_adapter.py',
    '../_base_/streams/synthetic_city2weather.py', '../_base_/methods/vida.py'
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)
model = dict(backbone={{_base_.vida_backbone}})
