# segformer_mit-b5_nvlabs.py with ViDA adapters (low and high rank) beside the
# query, key/value and output projection of every MiT attention: the NVlabs
# weights load with only the adapters' keys missing (fresh adapters add 0), or a
# warm-up checkpoint of tools/warmup_vida.py with them.
_base_ = ['./segformer_mit-b5_nvlabs.py', './vida_adapter.py']

model = dict(backbone={{_base_.vida_backbone}})
