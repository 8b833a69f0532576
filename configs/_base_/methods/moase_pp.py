# MoASE++ (on-policy distillation with a learned augmentation policy, by the
# MoASE authors): MoASE's model, teacher, one-group Adam, EMA teacher and
# stochastic restore (./moase.py), with soft CE against the teacher on the image
# plus w * T^2 * KL(student || teacher) on one policy-augmented copy of the
# network input that both models predict; no HP loss. docs/moase_pp.md.
# Every value is the class's default (mmseg_moase/methods/moase_pp.py, then
# MoASE's). Set an option here to change it: opd_temperature (T), opd_weight (w;
# 0: no distillation, no policy), opd_views (augmented views per step),
# policy_lr (the policy's own Adam), policy_entropy (entropy bonus),
# policy_strength_penalty (reward = -KL - penalty * mean(a^2)),
# policy_baseline_momentum (EMA reward baseline), policy_hidden,
# policy_init_std, fixed_strength (e.g. 0.5: augment at a fixed strength, no
# policy).
_base_ = './moase.py'
ctta_method = dict(type='MoASEPP')
