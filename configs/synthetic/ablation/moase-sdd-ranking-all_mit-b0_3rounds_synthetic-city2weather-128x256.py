# Ablation: SDD ranks post-ReLU zeros as the smallest (the public code).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(sdd_ranking='all')))
