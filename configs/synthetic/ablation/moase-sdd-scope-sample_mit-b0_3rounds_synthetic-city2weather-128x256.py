# Ablation: SDD over a whole map per expert (paper Eq. 2) instead of per token.
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(sdd_scope='sample')))
