"""What a CTTA run writes to resume and what its results say about their origin.

* :func:`run_fingerprint`: everything that determines the numbers (method,
  model, stream, loop options, the checkpoint's sha256, the seed), compared on
  ``--resume`` (:func:`fingerprint_diff` names what changed);
* :func:`save_state_file` / :func:`load_state_file`: the resume state, written
  durably (fsync before the rename; a full disk is an error naming the file and
  what is intact) and read with an error that names the file;
* :class:`Interrupts`: SIGTERM / SIGINT noted, so the loop saves at the next
  image boundary and exits;
* :func:`provenance` and :func:`method_label`: where a results file came from.
"""
import hashlib
import inspect
import json
import os
import os.path as osp
import signal
import subprocess
import threading
from typing import Any, Dict, List, Optional

import torch

from ...utils.fileio import write_atomically

#: Loop options that change the numbers (others: where files go, how often
#: the state is saved, progress output).
NUMERIC_LOOP_KEYS = ('precision', 'skip_attention_weights', 'cpu_malloc',
                     'check_labels')


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def _plain(x: Any) -> Any:
    """A JSON round trip: config dicts/tuples as plain dicts/lists."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))


def run_fingerprint(method: dict, model: dict, stream: dict, loop: dict,
                    checkpoint: Optional[str], seed: Any) -> Dict[str, Any]:
    """The components that determine a run's numbers, as plain JSON values.

    Args:
        method (dict): The resolved ``test_cfg.method``.
        model (dict): The model config.
        stream (dict): Domains, rounds, multi-view pipeline and dataloader
            template.
        loop (dict): The loop options (only :data:`NUMERIC_LOOP_KEYS` count).
        checkpoint (str, optional): The source checkpoint (its sha256 counts,
            not its path).
        seed: The run's seed.
    """
    return _plain(dict(
        method=method, model=model, stream=stream,
        loop={k: loop.get(k) for k in NUMERIC_LOOP_KEYS},
        checkpoint_sha256=file_sha256(checkpoint) if checkpoint else None,
        seed=seed))


def _leaves(x: Any, prefix: str = '') -> Dict[str, Any]:
    if isinstance(x, dict):
        out: Dict[str, Any] = {}
        for k, v in x.items():
            out.update(_leaves(v, f'{prefix}{k}.'))
        return out or {prefix[:-1]: {}}
    if isinstance(x, list) and x and any(isinstance(v, (dict, list))
                                         for v in x):
        out = {}
        for i, v in enumerate(x):
            out.update(_leaves(v, f'{prefix}{i}.'))
        return out
    return {prefix[:-1]: x}


def fingerprint_diff(saved: Dict[str, Any], now: Dict[str, Any],
                     limit: int = 8) -> List[str]:
    """``'key: saved -> now'`` for every leaf that differs (the first ``limit``)."""
    a, b = _leaves(saved), _leaves(now)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    lines = [f'{k}: {a.get(k, "<absent>")!r} -> {b.get(k, "<absent>")!r}'
             for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'... and {len(keys) - limit} more')
    return lines


def _tensor_bytes(x: Any) -> int:
    """Bytes of the tensors in nested dicts/lists (a state file's size, near)."""
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, dict):
        return sum(_tensor_bytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_tensor_bytes(v) for v in x)
    return 0


def save_state_file(state: Dict[str, Any], path: str, kept: str) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``:
    a crash at any point leaves the old state or the new one, whole.

    Raises:
        FileWriteError: a full disk (checked first where the file system
            tells its free space) or another write error, naming ``path``,
            the cause and ``kept`` (what is intact); the temporary file is
            removed.
    """
    write_atomically(path, lambda f: torch.save(state, f),
                     _tensor_bytes(state), kept)


def load_state_file(path: str) -> Dict[str, Any]:
    """Read a resume state; a truncated or foreign file is an error naming it."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unreadable file)
        raise ValueError(
            f'{path}: the resume state cannot be read ({type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else ""}); it is truncated or '
            'not a state of tools/test_ctta.py. Delete it to run the stream '
            'from the start, or pass another --work-dir.') from None
    if not isinstance(state, dict) or 'pass_idx' not in state:
        raise ValueError(f'{path} is not a CTTA resume state (no pass index); '
                         'delete it or pass another --work-dir.')
    return state


class StreamInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; the loop saves and exits at an image boundary."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f'interrupted by {signal.Signals(signum).name}')


class Interrupts:
    """Within ``with``: SIGTERM and SIGINT set :attr:`pending` instead of
    killing the process (a second one of the same kind does kill it).
    Outside the main thread, where handlers cannot be set, nothing changes.

    A SIGTERM to the whole process group (Slurm, ``kill -- -PGID``) also
    reaches the DataLoader workers, which torch makes exit on it; their
    SIGCHLD would make torch raise in the middle of the current step. Once a
    signal is pending, SIGCHLD is therefore left to the default action: the
    step finishes, and the loop saves at the image boundary before it asks
    the (dead) workers for the next batch.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.pending: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.pending == signum:  # asked twice: stop now
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.pending = signum
        # CPython runs pending handlers by signal number: SIGTERM/SIGINT
        # (15/2) before the workers' SIGCHLD (17), which then finds this.
        if signal.SIGCHLD not in self._old:
            self._old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD,
                                                      signal.SIG_DFL)

    def __enter__(self) -> 'Interrupts':
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def method_label(method_cfg: dict, registry) -> str:
    """``Type[opt=value, ...]`` with the options that differ from the method
    class's defaults (so a single-view and a 14-view MoASE run differ)."""
    mtype = method_cfg.get('type')
    cls = registry.get(mtype) if isinstance(mtype, str) else mtype
    name = mtype if isinstance(mtype, str) else getattr(mtype, '__name__', '?')
    defaults: Dict[str, Any] = {}
    if cls is not None:
        for c in reversed(cls.__mro__):
            try:
                params = inspect.signature(c.__init__).parameters
            except (TypeError, ValueError):
                continue
            defaults.update({k: p.default for k, p in params.items()
                             if p.default is not inspect.Parameter.empty})
    changed = []
    for k, v in sorted(method_cfg.items()):
        if k == 'type' or k == 'optim_wrapper':
            continue
        if k not in defaults or _plain(defaults[k]) != _plain(v):
            changed.append(f'{k}={v!r}')
    if 'optim_wrapper' in method_cfg:
        opt = (method_cfg['optim_wrapper'] or {}).get('optimizer', {})
        if 'lr' in opt:
            changed.append(f"lr={opt['lr']!r}")
    return f'{name}[{", ".join(changed)}]' if changed else name


def git_commit(path: str) -> Optional[str]:
    """The commit of the checkout ``path`` lies in, if git can tell."""
    try:
        out = subprocess.run(['git', '-C', path, 'rev-parse', 'HEAD'],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(config_path: Optional[str], config_dump: Optional[str],
               checkpoint: Optional[str], checkpoint_sha256: Optional[str],
               seed: Any, label: str) -> Dict[str, Any]:
    """Where a results file came from."""
    from ... import __version__
    from ...utils.host import host_info
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    return dict(config=config_path, resolved_config=config_dump,
                checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256,
                seed=seed, method_label=label, mmseg_moase_version=__version__,
                torch_version=torch.__version__, git_commit=git_commit(root),
                host=host_info())
