# Ablation (experts): MoASE with E = 2 (SDD layout of the public code for E).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(num_experts=2)))
