# segformer_mit-b5_mmseg.py with a MoASE adapter in every MiT block: mmseg's
# B5 Cityscapes weights load with only the adapters' keys missing (fresh adapters
# output 0, so the model starts as the source model).
_base_ = './segformer_mit-b5_moase.py'

model = dict(decode_head=dict(type='FusedSegformerHead'))  # as in *_mmseg.py
