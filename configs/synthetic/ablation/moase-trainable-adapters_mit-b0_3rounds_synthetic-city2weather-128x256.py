# Ablation: only experts and routers adapt (the paper's framing).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
ctta_method = dict(trainable='adapters')
