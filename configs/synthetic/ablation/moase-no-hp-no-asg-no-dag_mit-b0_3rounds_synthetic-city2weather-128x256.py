# Ablation (row +SDD): the row above with the gate reading all of h
# (dag_keep_ratio 1: no SDD before the gate, an ordinary softmax router) instead
# of the DAG's weakest half.
_base_ = './moase-no-hp-no-asg_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(dag_keep_ratio=1.0)))
