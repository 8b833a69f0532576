"""What the CTTA loop does to the model before a stream: the CPU allocator,
the attention switch, the source weights and, on several processes,
synchronised BatchNorm and global batch statistics; then the method started
on it (setup, the ``before_ctta`` hook point, the readiness check)."""
import copy
from typing import Any, Callable, List, Optional, Sequence

import torch.nn as nn
from mmengine.logging import print_log

from mmseg.registry import HOOKS

from ...methods.base import BaseCTTAMethod
from ...models.ctta_parts import use_rank_statistics
from ...models.fast_attention import skip_attention_weights
from ...models.sync_bn import convert_ctta_sync_bn
from ...models.checkpoints.loading import load_source_checkpoint
from ...utils.cpu_malloc import set_cpu_malloc
from ...utils.dist import is_distributed


def prepare_ctta_model(model: nn.Module, cpu_malloc: str = 'keep',
                       skip_weights: bool = True) -> bool:
    """What :class:`~.ctta_loop.CTTALoop` does to the model before a stream
    (and ``tools/benchmark_ctta.py`` before measuring): on CPU apply the
    allocator mode (:func:`~mmseg_moase.utils.cpu_malloc.set_cpu_malloc`), and
    switch MiT attention to skip its weight map
    (:func:`~mmseg_moase.models.fast_attention.skip_attention_weights`).

    Returns:
        bool: Whether freed CPU memory is now kept for reuse.
    """
    kept = (next(model.parameters()).device.type == 'cpu'
            and set_cpu_malloc(cpu_malloc))
    if skip_weights:
        skip_attention_weights(model)
    return kept


def prepare_stream_model(model: nn.Module, checkpoint: Optional[str],
                         cpu_malloc: str, skip_weights: bool) -> None:
    """:func:`prepare_ctta_model` (logging a kept allocator), then the source
    checkpoint loaded and checked against the model."""
    if prepare_ctta_model(model, cpu_malloc, skip_weights):
        print_log('CPU allocator: freed memory is kept for reuse '
                  "(ctta_cfg.cpu_malloc='keep'; 'default' turns it off)",
                  logger='current')
    if checkpoint:
        load_source_checkpoint(model, checkpoint)


def distribute_model(model: nn.Module) -> None:
    """On several processes: test-batch statistics of the global batch
    (every BatchNorm a :class:`CTTASyncBatchNorm`; batch-statistic modules
    over all ranks). The same tensors, so loaded weights stay in place. A
    no-op on one process."""
    if is_distributed():
        convert_ctta_sync_bn(model)
        use_rank_statistics(model)


def start_ctta_method(method: BaseCTTAMethod, model: nn.Module,
                      call_hook: Callable[..., None]) -> None:
    """Start a built method on the prepared model, as the loop does before
    the stream: ``method.setup(model)``, the loop's ``before_ctta`` hook
    point (hooks bind what the method runs, e.g. the EMA teacher's update),
    then ``method.ready()`` (raises when something the method needs is
    missing).

    Args:
        method (BaseCTTAMethod): The built method
            (:func:`~mmseg_moase.methods.builder.build_ctta_method`).
        model (nn.Module): The model to adapt (the runner's, possibly wrapped).
        call_hook (Callable): Calls a hook point by name with keyword
            arguments: the runner's ``call_hook``, or :func:`hook_caller` of
            hooks built without a runner.
    """
    method.setup(model)
    call_hook('before_ctta', method=method)
    method.ready()


def build_ctta_hooks(hook_cfgs: Sequence[dict]) -> List[Any]:
    """The ``custom_hooks`` that act at the loop's own hook point
    (``before_ctta``), built, in config order: what a tool running a method
    without a runner needs of them (:func:`hook_caller`)."""
    hooks = [HOOKS.build(copy.deepcopy(h)) for h in hook_cfgs]
    return [h for h in hooks if callable(getattr(h, 'before_ctta', None))]


def hook_caller(hooks: Sequence[Any]) -> Callable[..., None]:
    """A runner's ``call_hook`` over ``hooks`` for code without a runner:
    every hook that has the hook point is called with ``runner=None``."""

    def call_hook(fn_name: str, **kwargs) -> None:
        for hook in hooks:
            fn = getattr(hook, fn_name, None)
            if fn is not None:
                fn(None, **kwargs)

    return call_hook
