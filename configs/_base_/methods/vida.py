# ViDA (spec section 6): EMA teacher, HKA-scaled low/high-rank adapters, soft CE
# against the teacher's plain view, stochastic restore 0.01 (adapters included).
ctta_method = dict(
    type='ViDA',
    uncertainty_threshold=0.05,  # released runs' --unc_thr
    uncertainty_from='logits',  # 'logits' (released) | 'softmax'
    scale_rule='intended',  # 'intended' | 'released' (its elif: s_high never set)
    hka_views=None,  # None = every view of the tta_pipeline; int = draw that many
    trainable='all',  # 'all' (released) | 'adapters' | 'adapters+norm'
    lr=7.5e-6,  # everything but the adapters (CoTTA's segmentation rate)
    adapter_lr=2e-4,  # the adapters (MoASE's adapter rate)
    restore_prob=0.01,
    bn_stats='eval',  # 'eval' (source BN statistics) | 'test_batch'
    reset_optimizer_each_pass=False,
    view_index=None)  # None = the tta_pipeline's unscaled, unflipped view
# The released code keeps one EMA rate for the adapters and one for the rest.
custom_hooks = [
    dict(type='EMATeacherHook', momentum=0.999, buffers='keep',
         group_momentum=dict(vida=0.999))
]
