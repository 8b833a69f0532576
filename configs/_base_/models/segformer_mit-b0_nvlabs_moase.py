# segformer_mit-b0_nvlabs.py with a MoASE adapter in every MiT block (only the
# adapters' keys are missing from the NVlabs B0 weights).
_base_ = './segformer_mit-b0_moase.py'

model = dict(
    decode_head=dict(
        type='SegformerOriginalHead',
        channels=256,
        fuse_before_resize=True),  # same weights, less compute at 1/4 res
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768)))
