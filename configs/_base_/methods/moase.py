# MoASE: student with adapters, EMA teacher (CoTTA-style by default), hard CE +
# HP loss; one Adam group, every parameter at the paper's 2e-4 (as the paper and
# its public code). base_lr=7.5e-6 keeps the pre-trained weights at CoTTA's rate
# (the MoASE-split option, configs/synthetic/moase-split_*.py).
ctta_method = dict(
    type='MoASE',
    teacher='cotta',  # 'cotta' (14 views + anchor gate) | 'single' (public code)
    loss='ce',  # 'ce' (hard pseudo-label) | 'soft_ce'
    hp_mu=1.0,
    hp_norm='squared',  # 'squared' (paper) | 'l2' (public code)
    trainable='all',  # 'all' | 'adapters' | 'adapters+norm'
    adapter_lr=2e-4,
    base_lr=2e-4,  # 7.5e-6: MoASE-split
    restore_prob=0.01,
    restore_adapters=True,  # restore also resets adapter elements (public code)
    bn_stats='eval',  # 'eval' (CoTTA code: source BN statistics) | 'test_batch'
    reset_optimizer_each_pass=False,
    threshold=0.69,
    view_index=None)  # None = the tta_pipeline's unscaled, unflipped view
custom_hooks = [dict(type='EMATeacherHook', momentum=0.999, buffers='keep')]
