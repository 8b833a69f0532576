"""Worker of ``tools/compare_cost.py``: measures one source tree on request.

The comparison runs the working tree's copy of this script (by path) once per
tree, with that tree first on ``sys.path``, so the worker imports the tree's own
``mmseg_moase`` and ``tools/benchmark_ctta.py`` and builds and times the
variants with the tree's own ``expand_variants``, ``build_bench``, ``run_pass``
and ``measure_peak``. Keyword options a tree's function does not accept (an
older revision) are left out and reported back.

    python tools/cost_worker.py TREE

Protocol: one JSON object per line on stdin, one JSON reply per line on the
original stdout (anything the libraries print goes to stderr). Every reply has
``ok``; a failed command replies ``ok: false`` with the ``error`` traceback.

* ``{"cmd": "setup", "configs": [...], "moase_teachers": [...],
  "telemetry": false, "size": [H, W], "images": N, "device": "cpu",
  "threads": N|null, "cpu_malloc": "keep", "attention_weights": false,
  "precision": "fp32", "slowdown": 1.0}``: builds every variant; replies
  ``labels``, ``views``, ``missing`` (configs not in this tree), ``dropped``
  and the ``package`` and ``benchmark`` files imported.
* ``{"cmd": "pass", "label": L}``: one timed pass over the variant's images;
  replies ``wall`` and ``cpu`` (mean seconds per image).
* ``{"cmd": "peak", ...setup keys..., "label": L, "warmup": N}``: the tree's
  ``measure_peak`` of one variant; send it to a fresh worker (it builds the
  model in this process). Replies ``memory`` (``measure_peak``'s dict).
* ``{"cmd": "quit"}``: exits.
"""
import inspect
import json
import os
import os.path as osp
import sys
import time
import traceback
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

HERE = osp.dirname(osp.abspath(__file__))


def use_tree(tree: str) -> Tuple[Any, Any]:
    """Put ``tree`` first on ``sys.path`` and import its benchmark module.

    Returns:
        tuple: The tree's ``tools.benchmark_ctta`` and ``mmseg_moase`` modules.

    Raises:
        RuntimeError: The tree has no ``tools/benchmark_ctta.py``, or either
            module came from elsewhere than ``tree`` (e.g. an installed copy
            that shadows it).
    """
    # Run by path, this script's own folder is sys.path[0]: drop it so that
    # nothing of the working tree's tools/ shadows the tree's.
    sys.path[:] = [p for p in sys.path if osp.abspath(p or '.') != HERE]
    sys.path.insert(0, tree)
    if not osp.isfile(osp.join(tree, 'tools', 'benchmark_ctta.py')):
        raise RuntimeError(f'{tree} has no tools/benchmark_ctta.py, which '
                           'builds and times the variants: compare with a '
                           'revision that has it')
    from tools import benchmark_ctta
    import mmseg_moase
    for mod in (benchmark_ctta, mmseg_moase):
        path = osp.realpath(mod.__file__)
        if not path.startswith(osp.realpath(tree) + os.sep):
            raise RuntimeError(
                f'{mod.__name__} was imported from {path}, not from the tree '
                f'{tree}: something earlier on sys.path shadows it (PYTHONPATH?)')
    return benchmark_ctta, mmseg_moase


def call_accepted(func: Callable, args: Tuple, kwargs: Dict[str, Any],
                  dropped: Dict[str, Dict[str, Any]]) -> Any:
    """``func(*args, **kwargs)`` with only the keywords its signature accepts.

    The others are recorded in ``dropped[func.__name__]`` (name -> value).
    """
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return func(*args, **kwargs)
    for k, v in kwargs.items():
        if k not in params:
            dropped.setdefault(func.__name__, {})[k] = v
    return func(*args, **{k: v for k, v in kwargs.items() if k in params})


def busy_wait(cpu_seconds: float) -> None:
    """Spin until this process has used ``cpu_seconds`` more CPU time (on a
    busy machine the wall time grows with it as the pass's own does)."""
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


class Worker:
    """One tree's built variants and the commands that use them."""

    def __init__(self, tree: str) -> None:
        self.tree = osp.abspath(tree)
        self.bench_mod, self.package = use_tree(self.tree)
        self.benches: Dict[str, Any] = {}
        self.device = 'cpu'
        self.precision = 'fp32'
        self.slowdown = 1.0
        self.dropped: Dict[str, Dict[str, Any]] = {}

    def _variants(self, req: dict) -> Tuple[List[Any], List[str]]:
        """The tree's variants of ``req['configs']`` (paths relative to the
        tree, or absolute) and the configs the tree does not have."""
        configs, missing = [], []
        for c in req['configs']:
            path = c if osp.isabs(c) else osp.join(self.tree, c)
            if osp.isfile(path):
                configs.append(path)
            else:
                missing.append(c)
        if not configs:
            return [], missing
        variants = call_accepted(
            self.bench_mod.expand_variants, (configs, req['moase_teachers']),
            dict(telemetry=req['telemetry']), self.dropped)
        return variants, missing

    def setup(self, req: dict) -> dict:
        import torch
        if req.get('threads'):
            torch.set_num_threads(req['threads'])
        self.device = req['device']
        self.precision = req['precision']
        self.slowdown = float(req.get('slowdown') or 1.0)
        variants, missing = self._variants(req)
        for v in variants:
            self.benches[v.label] = call_accepted(
                self.bench_mod.build_bench,
                (v, tuple(req['size']), req['images'], self.device),
                dict(attention_weights=req['attention_weights'],
                     cpu_malloc=req['cpu_malloc']), self.dropped)
        return dict(labels=list(self.benches),
                    views={k: getattr(b, 'views', None)
                           for k, b in self.benches.items()},
                    missing=missing, dropped=self.dropped,
                    package=osp.realpath(self.package.__file__),
                    benchmark=osp.realpath(self.bench_mod.__file__))

    def run_pass(self, req: dict) -> dict:
        bench = self.benches[req['label']]
        wall, cpu = call_accepted(self.bench_mod.run_pass, (bench, self.device),
                                  dict(precision=self.precision), self.dropped)
        if self.slowdown > 1.0:
            # Test-only (compare_cost --inject-slowdown): stretch the pass by
            # the factor, counted like the pass itself (wall and CPU time).
            # Spinning for CPU time, not wall time, keeps the stretch exact
            # when other processes hold the cores.
            n = len(bench.batches)
            t0, c0 = time.perf_counter(), time.process_time()
            busy_wait((self.slowdown - 1.0) * cpu * n)
            wall += (time.perf_counter() - t0) / n
            cpu += (time.process_time() - c0) / n
        return dict(wall=wall, cpu=cpu)

    def peak(self, req: dict) -> dict:
        variants, _ = self._variants(req)
        variant = next((v for v in variants if v.label == req['label']), None)
        if variant is None:
            raise KeyError(f"no variant {req['label']!r} in {self.tree}")
        memory = call_accepted(
            self.bench_mod.measure_peak,
            (asdict(variant), list(req['size']), req['images'], req['warmup'],
             req['device'], req.get('threads')),
            dict(cpu_malloc=req['cpu_malloc'],
                 attention_weights=req['attention_weights'],
                 precision=req['precision']), self.dropped)
        return dict(memory=memory, dropped=self.dropped)


def serve(tree: str, inp: TextIO, out: TextIO) -> None:
    """Answer the commands of ``inp`` on ``out`` until ``quit`` or EOF."""
    try:
        worker: Optional[Worker] = Worker(tree)
        reply = dict(ok=True)
    except Exception:
        worker, reply = None, dict(ok=False, error=traceback.format_exc())
    out.write(json.dumps(reply) + '\n')
    out.flush()
    if worker is None:
        return
    handlers = dict(setup=worker.setup, peak=worker.peak,
                    **{'pass': worker.run_pass})
    for line in inp:
        req = json.loads(line)
        if req['cmd'] == 'quit':
            break
        try:
            reply = dict(ok=True, **handlers[req['cmd']](req))
        except Exception:
            reply = dict(ok=False, error=traceback.format_exc())
        out.write(json.dumps(reply) + '\n')
        out.flush()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit('usage: python tools/cost_worker.py TREE (started by '
                 'tools/compare_cost.py)')
    # Replies go to the original stdout; whatever else writes to fd 1 (the
    # libraries' prints and logs) goes to stderr instead.
    out = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)
    serve(sys.argv[1], sys.stdin, out)


if __name__ == '__main__':
    main()
