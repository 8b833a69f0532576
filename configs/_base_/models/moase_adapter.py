# MoASE adapter options shared by the SegFormer+MoASE model bases (docs/method.md).
# No `custom_imports` here: the bases and configs this is combined with import
# mmseg_moase themselves (mmengine refuses a key set by two bases).

# Every adapter option is the class's default (MoASEAdapter,
# mmseg_moase/models/adapters/moase.py; listed in docs/method.md). Set one here
# (or in a config: model = dict(backbone=dict(moase_cfg=dict(...)))) to change
# it: num_experts; bottleneck (per stage with the backbone's
# `moase_bottlenecks`; None = max(D/16, 16)); sdd_directions and sdd_ratios
# (None: the public code's layout for any num_experts, so that `num_experts`
# alone changes E; lists set them explicitly); sdd_scope ('token': public code
# | 'sample': paper Eq. 2); sdd_ranking (what 'smallest' experts rank: 'active',
# the weakest active neurons, default by measurement, docs/results.md "Live
# experts" | 'all', public code: post-ReLU zeros count as the smallest |
# 'released', the public code as it runs: every expert keeps its smallest
# post-ReLU activations); eta; dag_input ('low': paper Eq. 3 | 'high': public
# code); dag_keep_ratio; asg_grad ('none': faithful | 'ste': our relaxation);
# asg_temperature; expert_type ('linear' | 'mixffn'); scale.
moase_cfg = dict(type='MoASEAdapter')

# Merged into mmseg's SegFormer backbone by the model bases:
# model = dict(backbone={{_base_.moase_backbone}}). The backbone's own options
# are its defaults too (MixVisionTransformerMoASE,
# mmseg_moase/models/backbones/mit_moase.py): moase_stages (stages, 0-based,
# whose blocks get adapters: all) and moase_bottlenecks (int, or one value per
# stage; None = the adapter's default).
moase_backbone = dict(
    type='MixVisionTransformerMoASE',
    init_cfg=None,  # no ImageNet download: weights come from the source checkpoint
    moase_cfg=moase_cfg)
