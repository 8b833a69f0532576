# TENT: entropy minimisation on normalisation affine parameters (spec section 4).
ctta_method = dict(
    type='TENT',
    loss='entropy',  # 'entropy' (TENT paper) | 'self_ce' (CoTTA repository)
    optim_wrapper=dict(
        constructor='TrainableGroupsOptimWrapperConstructor',
        optimizer=dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999)),
        paramwise_cfg=dict(trainable='norm')))
