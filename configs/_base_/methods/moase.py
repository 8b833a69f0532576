# MoASE: student with adapters, EMA teacher (CoTTA-style by default), hard CE +
# HP loss; one Adam group, every parameter at the paper's rate (as the paper and
# its public code). base_lr at CoTTA's rate keeps the pre-trained weights there
# (the MoASE-split option, configs/synthetic/moase-split_*.py).
# Every value is the class's default (mmseg_moase/methods/moase.py and CoTTA's;
# table in docs/method.md). Set an option here to change it: teacher ('cotta':
# 14 views + anchor gate | 'single': public code), loss ('ce': hard
# pseudo-label | 'soft_ce'), hp_mu, hp_norm ('squared': paper | 'l2': public
# code), trainable ('all' | 'adapters' | 'adapters+norm'), adapter_lr, base_lr,
# restore_prob, restore_adapters (restore also resets adapter elements, as the
# public code), bn_stats ('eval': CoTTA code, source BN statistics |
# 'test_batch'), reset_optimizer_each_pass, threshold. The plain view is the
# stream's plain_view_index.
ctta_method = dict(type='MoASE')
# EMA teacher: momentum is the method's `ema_momentum` unless set here.
custom_hooks = [dict(type='EMATeacherHook', buffers='keep')]
