# Ablation (row +DAG): the row above without the ASG (eta = 0: the keep
# ratios stay the base ratios).
_base_ = './moase-no-hp_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(eta=0.0)))
