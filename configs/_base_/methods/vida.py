# ViDA (our port): EMA teacher, HKA-scaled low/high-rank adapters, soft CE
# against the teacher's plain view, stochastic restore (adapters included).
# Every value is the class's default (mmseg_moase/methods/vida.py; table in
# docs/method.md). Set an option here to change it: uncertainty_threshold (the
# released runs' --unc_thr), uncertainty_from ('logits': released |
# 'softmax'), scale_rule ('intended' | 'released': its elif, s_high never set),
# hka_views (None: every view of the tta_pipeline; int: draw that many),
# trainable ('all': released | 'adapters' | 'adapters+norm'), lr (everything
# but the adapters: CoTTA's rate), adapter_lr (MoASE's adapter rate),
# restore_prob, bn_stats ('eval': source BN statistics | 'test_batch'),
# reset_optimizer_each_pass. The plain view is the stream's plain_view_index.
ctta_method = dict(type='ViDA')
# EMA teacher: momentum is the method's `ema_momentum` unless set here. The
# released code keeps one rate for the adapters and one for the rest (both the
# same): group_momentum=dict(vida=...) sets the adapters' own.
custom_hooks = [dict(type='EMATeacherHook', buffers='keep')]
