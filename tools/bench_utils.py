"""What the benchmark tools share: the default ``--jobs``, machine description,
statistics, memory readings, a function run in a fresh process. Tool-only:
the package records a run's machine with
:func:`mmseg_moase.utils.host.host_info`."""
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence

import torch

from mmseg_moase.utils.host import host_info


def default_jobs() -> int:
    """The tools' default ``--jobs`` (runs side by side): two where there are
    two cores or more, else one."""
    return min(2, os.cpu_count() or 1)


def machine_description(device: str) -> str:
    """CPU, core count, torch version and threads, and the GPU on ``cuda``."""
    host = host_info()
    text = (f"{host['cpu'] or host['machine']}, "
            f'{os.cpu_count()} CPUs, torch {torch.__version__} '
            f"({host['torch_threads']} threads)")
    if device.startswith('cuda'):
        text += ', ' + host['cuda_device']
    return text


def min_median_max(values: Sequence[float]) -> Dict[str, float]:
    """``dict(min=, median=, max=)`` of ``values``."""
    return dict(min=min(values), median=statistics.median(values),
                max=max(values))


def run_in_child(root: str, module: str, func: str, args: Sequence[Any],
                 env: Optional[Dict[str, str]] = None) -> Any:
    """``module.func(*args)`` in a fresh Python process (no allocator state of
    this one carried over); returns its JSON-serialisable result.

    Args:
        root (str): Put first on the child's ``sys.path`` (the repository).
        module (str): Importable from ``root``, e.g. ``'tools.benchmark_ctta'``.
        func (str): Function name in ``module``.
        args (Sequence): Positional arguments; Python literals (``repr`` is
            parsed back in the child).
        env (dict, optional): The child's environment.
    """
    code = ('import json, sys; sys.path.insert(0, %r); from %s import %s; '
            'print(json.dumps(%s(*%r)))') % (root, module, func, func, list(args))
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. ``'VmRSS'`` or ``'VmHWM'`` (peak).

    Raises:
        KeyError: The field is not in the file (not Linux, or a misspelt name).
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(f'{field} is not in /proc/self/status')


def reset_peak_rss() -> None:
    """Reset the peak resident set size (``VmHWM``) to the current RSS."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
