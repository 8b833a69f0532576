# segformer_mit-b0_mmseg.py with a MoASE adapter in every MiT block: mmseg's
# B0 Cityscapes weights load with only the adapters' keys missing (fresh adapters
# output 0, so the model starts as the source model).
_base_ = ['./segformer_mit-b0_mmseg.py', './moase_adapter.py']

model = dict(backbone={{_base_.moase_backbone}})
