# Ablation: the DAG reads the strongest half of h (the public code).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(dag_input='high')))
