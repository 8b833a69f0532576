# MoASE adapter options shared by the SegFormer+MoASE model bases (spec section 1).
# No `custom_imports` here: the bases and configs this is combined with import
# mmseg_moase themselves (mmengine refuses a key set by two bases).

moase_cfg = dict(
    type='MoASEAdapter',
    num_experts=4,
    # Bottleneck width: per stage with the backbone's `moase_bottlenecks`;
    # None = max(D/16, 16).
    # SDD per expert; None = the public code's layout for any num_experts (first
    # half 'smallest', second half 'largest', base ratios alternating 1/4, 1/2;
    # for 4 experts: smallest 1/4, smallest 1/2, largest 1/4, largest 1/2), so
    # that `num_experts` alone changes E. Lists set them explicitly.
    sdd_directions=None,
    sdd_ratios=None,
    sdd_scope='token',  # 'token' (public code) | 'sample' (paper Eq. 2)
    # What 'smallest' experts rank: 'active' (the weakest active neurons; default
    # by measurement, README "Live experts") | 'all' (public code: post-ReLU zeros
    # count as the smallest, so those experts mostly keep only zeros).
    sdd_ranking='active',
    eta=0.1,
    dag_input='low',  # 'low' (paper Eq. 3) | 'high' (public code)
    asg_grad='none',  # 'none' (faithful) | 'ste' (our relaxation, an extension)
    expert_type='linear',  # 'linear' | 'mixffn'
    scale=0.8)

# Merged into mmseg's SegFormer backbone by the model bases:
# model = dict(backbone={{_base_.moase_backbone}}).
moase_backbone = dict(
    type='MixVisionTransformerMoASE',
    init_cfg=None,  # no ImageNet download: weights come from the source checkpoint
    moase_cfg=moase_cfg,
    moase_stages=[0, 1, 2, 3],  # stages (0-based) whose blocks get adapters
    moase_bottlenecks=None)  # int, or one value per stage; None = default
