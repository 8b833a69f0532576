# NormStat ("BN adapt"): BatchNorm layers use the test batch's statistics.
# For SegFormer only the decode head has BatchNorm (MiT uses LayerNorm).
ctta_method = dict(type='NormStat')
