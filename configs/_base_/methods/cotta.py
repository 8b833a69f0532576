# CoTTA as its released code runs it: 14-view EMA teacher with the anchor gate,
# CE on the plain view, stochastic restore, Adam re-created at each pass.
# Every value is the class's default (mmseg_moase/methods/cotta.py; table in
# docs/method.md). Set an option here to change it: threshold, restore_prob,
# reset_optimizer_each_pass, bn_stats ('eval': released code, source BN
# statistics | 'test_batch'), or optim_wrapper (e.g.
# optim_wrapper=dict(optimizer=dict(lr=...))), merged over the class's default
# optimiser. The plain view is the stream's plain_view_index.
ctta_method = dict(type='CoTTA')
# EMA teacher: momentum (the share the teacher keeps per step) is the method's
# `ema_momentum` (MeanTeacherMethod) unless set here.
custom_hooks = [dict(type='EMATeacherHook', buffers='keep')]
