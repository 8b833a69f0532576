from .acdc import ACDCDataset
from .stream_sampler import StreamSampler

__all__ = ['ACDCDataset', 'StreamSampler']
