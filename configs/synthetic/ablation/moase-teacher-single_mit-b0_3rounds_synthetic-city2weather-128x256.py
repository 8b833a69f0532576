# Ablation: the public classification code's teacher (plain view, no anchor).
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
ctta_method = dict(teacher='single')
