"""Let ``torch.load(weights_only=True)`` read the checkpoints mmengine writes.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7
checkpoints hold, besides tensors, the message hub: ``HistoryBuffer`` objects with
numpy arrays and, through ``HistoryBuffer.__getstate__``, its statistics functions,
which pickle as ``getattr(HistoryBuffer, 'min')`` and so on; ``meta`` holds numpy
scalars; and the CTTA resume state holds numpy's RNG state (a uint32 array). The
safe unpickler rejects all of these, so mmengine cannot resume from or
reload a checkpoint it saved itself. Rather than turning safe loading off, this module
allowlists exactly those types, once, when the package is imported. ``getattr`` is
*not* allowlisted: the global ``builtins.getattr`` is mapped to a function that only
returns HistoryBuffer's own statistics methods and refuses anything else.
"""
import pickle
from typing import Any, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: The statistics HistoryBuffer pickles by reference (its ``__getstate__``).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods.

    Raises:
        pickle.UnpicklingError: for any other object or attribute.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'HistoryBuffer.{{{",".join(HISTORY_BUFFER_STATISTICS)}}} is allowed')


def _numpy_globals() -> List[object]:
    """The numpy callables and classes a pickled array or scalar refers to."""
    from numpy.core.multiarray import _reconstruct, scalar
    dtypes = {type(np.dtype(t)) for t in (
        np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
        np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)}
    return [_reconstruct, scalar, np.ndarray, np.dtype, *sorted(
        dtypes, key=lambda t: t.__name__)]


def checkpoint_safe_globals() -> List[object]:
    """Every non-tensor global an mmengine 0.10.7 checkpoint needs."""
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr'),
            *_numpy_globals()]


def register_checkpoint_safe_globals() -> None:
    """Add :func:`checkpoint_safe_globals` to torch's weights-only allowlist.

    Idempotent; a no-op on torch builds without ``add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(checkpoint_safe_globals())
