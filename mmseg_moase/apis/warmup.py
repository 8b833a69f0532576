"""Adapter warm-up: train adapters on the source data with everything else frozen.

ViDA's released models start from adapters tuned this way (ViDA issue 7: "add
the ViDA to the source model, freezing the backbone to tune the adapter").
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log


def prepare_warmup_config(config: str, checkpoint: str,
                          work_dir: Optional[str] = None,
                          max_iters: Optional[int] = None,
                          cfg_options: Optional[dict] = None) -> Config:
    """The warm-up config: ``config`` with its ``SourceWeightsHook`` pointed
    at ``checkpoint`` and, with ``max_iters``, the schedule cut to that length.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        ValueError: the config has no ``SourceWeightsHook`` in
            ``custom_hooks`` (it would train from the config's initialisation).
    """
    for what, path in (('config', config), ('checkpoint', checkpoint)):
        if not osp.isfile(path):
            raise FileNotFoundError(f'warm-up {what} not found: {path}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h.get('type') == 'SourceWeightsHook']
    if not hooks:
        raise ValueError(
            f'{config}: no SourceWeightsHook in custom_hooks; a warm-up config '
            'loads the source model through it (see configs/synthetic/'
            'vida-warmup_mit-b0_synthetic-source_128x256.py)')
    hooks[0]['checkpoint'] = checkpoint
    cfg.load_from = None
    cfg.resume = False
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(config))[0])
    if max_iters is not None:
        shorten_schedule(cfg, max_iters)
    return cfg


def shorten_schedule(cfg: Config, max_iters: int) -> Config:
    """Cut an iteration-based training schedule to ``max_iters``, in place.

    The training length, the validation and checkpoint intervals become
    ``max_iters``; the last parameter scheduler ends there and, with more
    than one scheduler, the first (the warm-up) ends at the earlier of its
    own end and a tenth of ``max_iters`` (at least 1), where the last begins.
    Used for every shortened training: the source model, the adapter warm-up
    and the Oracle's fine-tuning.

    Args:
        cfg (Config): A training config with ``train_cfg.max_iters``,
            ``train_cfg.val_interval`` and ``default_hooks.checkpoint``.
        max_iters (int): The new length (>= 1).

    Returns:
        Config: ``cfg`` itself.

    Raises:
        ValueError: ``max_iters`` is below 1.
    """
    if max_iters < 1:
        raise ValueError(f'max_iters must be >= 1, got {max_iters}')
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    scheds = cfg.get('param_scheduler') or []
    if scheds:
        warm = scheds[0] if len(scheds) > 1 else None
        if warm is not None:
            warm.end = min(warm.end, max(1, max_iters // 10))
            scheds[-1].begin = warm.end
        scheds[-1].end = max_iters
    return cfg


def run_warmup(cfg: Config, validate: bool = True) -> dict:
    """Train, then (``validate``) score the source val set; returns the
    checkpoint path and the val metrics."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run() if (validate and runner.val_loop) else {}
    iters = cfg.train_cfg.max_iters
    ckpt = osp.join(cfg.work_dir, f'iter_{iters}.pth')
    print_log(f'adapter warm-up: {ckpt}', logger='current')
    return dict(checkpoint=ckpt, iterations=iters,
                metrics={k: float(v) for k, v in metrics.items()})

