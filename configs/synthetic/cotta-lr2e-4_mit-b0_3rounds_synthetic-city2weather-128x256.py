# CoTTA-lr2e-4: CoTTA with MoASE's optimiser (one Adam group, every parameter,
# 2e-4, betas 0.9/0.99) instead of the released 7.5e-6: CoTTA at the rate MoASE is
# compared at, so a gap between the two rows is the adapters', not the rate's.
_base_ = './cotta_mit-b0_3rounds_synthetic-city2weather-128x256.py'
ctta_method = dict(
    optim_wrapper=dict(optimizer=dict(lr=2e-4, betas=(0.9, 0.99))))
