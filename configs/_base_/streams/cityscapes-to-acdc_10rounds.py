# Cityscapes -> ACDC continual test-time adaptation, CoTTA protocol: 10 rounds of
# Fog -> Night -> Rain -> Snow, no reset. Everything else (data, pipelines, the
# 14 teacher views) is the 3-round stream's.
_base_ = './cityscapes-to-acdc_3rounds.py'

ctta_stream = dict(rounds=10)
