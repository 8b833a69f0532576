# Ablation: the public code's expert selection as it runs (every expert, the
# 'largest' ones too, keeps its smallest post-ReLU activations).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(sdd_ranking='released')))
