# CoTTA as released (spec section 4): 14-view EMA teacher, anchor gate 0.69,
# CE on the plain view, stochastic restore 0.01, Adam re-created at each pass.
ctta_method = dict(
    type='CoTTA',
    threshold=0.69,
    restore_prob=0.01,
    reset_optimizer_each_pass=True,
    bn_stats='eval',  # 'eval' (released code: source BN statistics) | 'test_batch'
    view_index=None,  # None: the stream's plain_view_index
    optim_wrapper=dict(
        constructor='TrainableGroupsOptimWrapperConstructor',
        optimizer=dict(type='Adam', lr=7.5e-6, betas=(0.9, 0.999)),
        paramwise_cfg=dict(trainable='all')))
# momentum = share the teacher keeps: teacher = 0.999 * teacher + 0.001 * student.
custom_hooks = [dict(type='EMATeacherHook', momentum=0.999, buffers='keep')]
