# ViDA adapter options shared by the SegFormer+ViDA model bases (docs/method.md).
# No `custom_imports` here: the model bases this is combined with import
# mmseg_moase themselves (mmengine refuses a key set by two bases).

# Merged into mmseg's SegFormer backbone by the model bases:
# model = dict(backbone={{_base_.vida_backbone}}). Every adapter option is the
# class's default (MixVisionTransformerViDA,
# mmseg_moase/models/backbones/mit_vida.py); set one here to change it:
# vida_low_rank and vida_high_rank (the released configs' rank1 and rank2),
# vida_stages (stages, 0-based, whose attention gets adapters: all).
vida_backbone = dict(
    type='MixVisionTransformerViDA',
    init_cfg=None)  # no ImageNet download: weights come from the source checkpoint
