from . import transforms  # noqa: F401  (registers WeatherCorruption)
from .acdc import ACDCDataset
from .cityscapes_c import CityscapesCDataset  # noqa: F401
from .stream_sampler import StreamSampler

__all__ = ['ACDCDataset', 'StreamSampler']
