# ViDA adapter options shared by the SegFormer+ViDA model bases (spec section 6).
# No `custom_imports` here: the model bases this is combined with import
# mmseg_moase themselves (mmengine refuses a key set by two bases).

# Merged into mmseg's SegFormer backbone by the model bases:
# model = dict(backbone={{_base_.vida_backbone}}).
vida_backbone = dict(
    type='MixVisionTransformerViDA',
    init_cfg=None,  # no ImageNet download: weights come from the source checkpoint
    vida_low_rank=1,  # released configs: rank1 = 1
    vida_high_rank=128,  # released configs: rank2 = 128
    vida_stages=[0, 1, 2, 3])  # stages (0-based) whose attention gets adapters
