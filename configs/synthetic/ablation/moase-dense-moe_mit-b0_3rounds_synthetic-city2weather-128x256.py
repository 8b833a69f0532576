# Ablation (row +MoE): the row above with dense experts (every SDD keep ratio
# 1: no activation sparsity), a plain 4-expert mixture of adapters.
_base_ = './moase-no-hp-no-asg-no-dag_mit-b0_3rounds_synthetic-city2weather-128x256.py'
model = dict(backbone=dict(moase_cfg=dict(sdd_ratios=[1.0, 1.0, 1.0, 1.0])))
