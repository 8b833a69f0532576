# segformer_mit-b0_nvlabs.py with a MoASE adapter in every MiT block (only the
# adapters' keys are missing from the NVlabs B0 weights).
_base_ = ['./segformer_mit-b0_nvlabs.py', './moase_adapter.py']

model = dict(backbone={{_base_.moase_backbone}})
