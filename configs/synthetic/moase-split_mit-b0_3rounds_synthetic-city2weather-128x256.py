# MoASE-split: MoASE with the pre-trained weights at CoTTA's 7.5e-6 and only the
# experts and routers at 2e-4 (MoASE's default before the calibrated benchmark).
# Beside MoASE (everything at 2e-4) and CoTTA-lr2e-4 it shows how much of a gain
# is the adapters and how much the larger learning rate.
_base_ = './moase_mit-b0_3rounds_synthetic-city2weather-128x256.py'
ctta_method = dict(base_lr=7.5e-6)
