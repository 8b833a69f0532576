# segformer_mit-b5_nvlabs.py with a MoASE adapter in every MiT block: the NVlabs
# B5 Cityscapes weights load with only the adapters' keys missing (fresh adapters
# output 0, so the model starts as the source model).
_base_ = ['./segformer_mit-b5_nvlabs.py', './moase_adapter.py']

model = dict(backbone={{_base_.moase_backbone}})
