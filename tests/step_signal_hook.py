"""Test-only: stop a CTTA run at a step boundary the run itself reports.

:class:`SignalAtStepHook` counts the stream's test iterations (the CTTA loop
calls ``after_test_iter`` once per step, after the step's outputs are scored
and before the state of that step is saved) and, at the ``step``-th one, sends
``signal`` to its own process (or process group). The kill point is then the
same on every machine whatever its speed: the last saved state is the one of
the step before (``save_interval=1``).

A run gets the hook from a config that inherits the run's config
(:func:`write_signal_config`); the run's subprocess imports this module through
``custom_imports``, found on ``PYTHONPATH`` (:func:`hook_env`).
"""
import os
import os.path as osp
import signal
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

TESTS_DIR = osp.dirname(osp.abspath(__file__))


@HOOKS.register_module()
class SignalAtStepHook(Hook):
    """Send ``signal`` at the end of the ``step``-th test iteration.

    Args:
        step (int): Test iterations of this process counted from 1 (over the
            whole stream, every pass).
        signal (str): A name of :mod:`signal` (``'SIGKILL'``, ``'SIGTERM'``).
        group (bool): Send it to the process group (as Slurm does: the
            dataloader workers get it too) instead of this process only.
    """
    priority = 'LOWEST'

    def __init__(self, step: int, signal: str = 'SIGKILL',
                 group: bool = False) -> None:
        self.step = step
        self.signal = signal
        self.group = group
        self.count = 0

    def after_test_iter(self, runner, batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs=None) -> None:
        self.count += 1
        if self.count != self.step:
            return
        signum = getattr(signal, self.signal)
        if self.group:
            os.killpg(os.getpgrp(), signum)
        else:
            os.kill(os.getpid(), signum)


def write_signal_config(path: str, config: str, step: int,
                        sig: str = 'SIGKILL', group: bool = False) -> str:
    """A config at ``path``: ``config`` plus :class:`SignalAtStepHook`
    (after the config's own ``custom_hooks`` and ``custom_imports``, which a
    child config would otherwise replace).

    Args:
        path (str): Where to write it.
        config (str): The run's config (inherited as is).
        step (int): The hook's ``step``.
        sig (str): The hook's ``signal``.
        group (bool): The hook's ``group``.

    Returns:
        str: ``path``.
    """
    from mmengine.config import Config, ConfigDict
    base = Config.fromfile(config)

    def plain(x):
        return x.to_dict() if isinstance(x, ConfigDict) else x
    hooks = [plain(h) for h in base.get('custom_hooks', None) or []]
    hooks.append(dict(type='SignalAtStepHook', step=step, signal=sig,
                      group=group))
    imports = dict(plain(base.get('custom_imports', None) or {}))
    own = imports.get('imports', [])
    imports['imports'] = [*([own] if isinstance(own, str) else own),
                          'step_signal_hook']
    imports['allow_failed_imports'] = False
    with open(path, 'w') as f:
        f.write(f'_base_ = [{osp.abspath(config)!r}]\n'
                f'custom_imports = {imports!r}\n'
                f'custom_hooks = {hooks!r}\n')
    return path


def hook_env(env: Dict[str, str]) -> Dict[str, str]:
    """``env`` with this folder on ``PYTHONPATH`` (for ``custom_imports``)."""
    paths = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    return dict(env, PYTHONPATH=os.pathsep.join(paths + [TESTS_DIR]))
