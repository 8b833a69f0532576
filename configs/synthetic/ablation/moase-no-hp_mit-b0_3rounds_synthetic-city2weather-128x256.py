# Ablation (paper Table 'components', row +ASG): MoASE without the HP loss.
_base_ = '../moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
ctta_method = dict(hp_mu=0.0)
