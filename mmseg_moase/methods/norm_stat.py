"""NormStat ("BN adapt"): normalise with the statistics of the test batch."""
import warnings

from ..registry import METHODS
from .base import use_test_batch_stats
from .source import Source


@METHODS.register_module()
class NormStat(Source):
    """Test-time normalisation statistics, no parameter update.

    Every BatchNorm layer normalises each test batch with that batch's own mean and
    variance instead of the running statistics from source training (Schneider et
    al. 2020; "BN adapt" in the CoTTA paper). Nothing else changes.

    What this means for SegFormer: the MiT backbone normalises with LayerNorm, which
    has no running statistics and already uses per-token statistics at any time, so
    the backbone is untouched; only the decode head's BatchNorm (the fuse layer,
    ``SyncBN`` in mmseg's configs) switches to test-batch statistics. With batch size
    1 and slide inference, the statistics are those of each window.
    """

    def setup(self, model) -> None:
        super().setup(model)  # Source: eval mode, frozen; scores the plain view
        if not use_test_batch_stats(self.segmentor):
            warnings.warn(
                'NormStat: the model has no BatchNorm layer, so it normalises '
                'exactly as the source model does (LayerNorm has no running '
                'statistics): this run equals Source.', stacklevel=2)
