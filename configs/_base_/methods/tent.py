# TENT: entropy minimisation on normalisation affine parameters (docs/method.md).
# Every value is the class's default (mmseg_moase/methods/tent.py): loss
# 'entropy' (TENT paper; 'self_ce': CoTTA repository) and Adam on the `norm`
# group; an optim_wrapper set here is merged over that default optimiser.
ctta_method = dict(type='TENT')
