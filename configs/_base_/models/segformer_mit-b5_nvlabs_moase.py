# segformer_mit-b5_nvlabs.py with a MoASE adapter in every MiT block: the NVlabs
# B5 Cityscapes weights load with only the adapters' keys missing (fresh adapters
# output 0, so the model starts as the source model).
_base_ = './segformer_mit-b5_moase.py'

model = dict(
    decode_head=dict(
        type='SegformerOriginalHead',
        channels=768,
        fuse_before_resize=True),  # same weights, less compute at 1/4 res
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
