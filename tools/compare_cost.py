"""Cost regression check: the working tree against a base revision, side by side.

Measures seconds per image (and peak memory) of the CTTA methods of the given
configs in two source trees in one invocation, interleaved, and prints per
method the ratios new / base. The base tree is ``git archive REV`` of
``--base REV`` exported to a temporary folder; the new tree is the working
tree (or ``--new REV``, exported the same way). Each tree is measured with its
**own** code: one long-lived worker process per tree
(``tools/cost_worker.py``, run with that tree first on ``sys.path``) builds the
variants with the tree's own ``tools/benchmark_ctta.py`` (``expand_variants``,
``build_bench``) and times passes with its own ``run_pass``; keyword options a
tree's functions do not accept (an older revision) are left out and listed in
the report. Configs under the repository are taken from each tree (the same
relative path); a config outside it is used by both.

Timing: both workers build every variant; then, for each of ``--warmup`` +
``--repeats`` rounds and each variant, one pass over the images in one tree,
then one in the other (which tree goes first alternates), so only one process
computes at a time and both see the same machine state. Each timed round gives
one *paired ratio* new / base per variant, of wall-clock and of CPU time.
Peak memory (unless ``--no-memory``): each tree's own ``measure_peak`` in a fresh
worker process of that tree, once per variant and tree.

Report per variant: base and new median seconds per image, the time ratio (the
median of the paired ratios, with their min and max: the repeat spread), the
CPU-time ratio likewise and the memory ratio. **Flag rule**: a time (or CPU
time) ratio is flagged when its *smallest* paired ratio exceeds ``--threshold``
(default 1.10), i.e. the new tree was more than 10% slower in every repeat: the
slowdown is above the threshold and the whole repeat spread lies above it.
(Identical code gives every paired ratio above 1 in one run of 2**repeats,
one in four with 2 repeats, so "smallest ratio > 1" would flag noise.) The
memory ratio, one measurement per tree, is flagged when it exceeds the
threshold. A variant present in only one tree is reported as such, with its
own figures and no ratio.

    python tools/compare_cost.py --base REV [--new REV] [CONFIG ...]
        [--threshold 1.10] [--fail-on-flag] [--out work_dirs/compare_cost.json]
        [every measurement option of tools/benchmark_ctta.py, same defaults:
         --size H W --images 2 --repeats 3 --warmup 1 --threads N --no-memory
         --device --moase-teachers --telemetry --cpu-malloc
         --attention-weights --precision]

Exit status 0, or 1 with ``--fail-on-flag`` when anything is flagged (2: a
revision or config that cannot be used). As with ``tools/benchmark_ctta.py``
the configs must include a Source config; Source is
the same code in most changes, so its row also shows the noise of the machine.
"""
import argparse
import inspect
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import benchmark_ctta as bench  # noqa: E402
from tools.bench_utils import (machine_description,  # noqa: E402
                               min_median_max)

WORKER = osp.join(ROOT, 'tools', 'cost_worker.py')
DEFAULT_THRESHOLD = 1.10
TREES = ('base', 'new')
FLAG_RULE = ('time/CPU: smallest paired ratio new/base > threshold (slower by '
             'more than the threshold in every repeat); memory: ratio > '
             'threshold')


class CompareError(ValueError):
    """A revision or config the comparison cannot use (the message says which)."""


# ------------------------------------------------------------------ options
def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], add_help=False, allow_abbrev=False,
        epilog='CONFIGs and the measurement options are those of '
        'tools/benchmark_ctta.py, with its defaults (listed below with -h).')
    parser.add_argument('-h', '--help', action='store_true',
                        help='show this help and the measurement options')
    parser.add_argument('--base', metavar='REV',
                        help='base revision (anything git rev-parse accepts: '
                        'a commit, branch, tag, HEAD~1)')
    parser.add_argument('--new', metavar='REV',
                        help='measure this revision instead of the working tree')
    parser.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD,
                        help='flag a ratio new/base above this when every '
                        'repeat exceeds it (default %(default)s)')
    parser.add_argument('--fail-on-flag', action='store_true',
                        help='exit with status 1 when anything is flagged')
    parser.add_argument('--out', default=osp.join('work_dirs',
                                                  'compare_cost.json'),
                        help='JSON report (default %(default)s)')
    # Test-only: the new tree's worker stretches every timed pass by FACTOR
    # (it spins for FACTOR - 1 times the pass's CPU time inside the timed
    # region), so that a test can show that a slowdown is flagged. Hidden
    # from --help.
    parser.add_argument('--inject-slowdown', type=float, default=1.0,
                        metavar='FACTOR', help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None
               ) -> Tuple[argparse.Namespace, argparse.Namespace]:
    """This tool's options and ``tools/benchmark_ctta.py``'s (the rest).

    Returns:
        tuple: (this tool's options, the measurement options as
        ``benchmark_ctta.parse_args`` gives them).
    """
    parser = _own_parser()
    own, rest = parser.parse_known_args(argv)
    if own.help:
        parser.print_help()
        print('\nMeasurement options (tools/benchmark_ctta.py; its --out is '
              "replaced by this tool's):\n")
        bench.parse_args(['--help'])  # prints and exits
    if not own.base:
        parser.error('--base REV is required: the revision to compare the '
                     'working tree with (e.g. --base HEAD or --base main)')
    if own.threshold < 1.0:
        parser.error(f'--threshold must be >= 1 (a ratio new/base; 1.10 flags '
                     f'a 10% slowdown), got {own.threshold}')
    if own.inject_slowdown < 1.0:
        parser.error('--inject-slowdown must be >= 1')
    return own, bench.parse_args(rest)


# --------------------------------------------------------------------- git
def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['git', '-C', ROOT, *args], capture_output=True,
                          text=True)


def resolve_rev(rev: str, option: str) -> str:
    """The commit id of ``rev``.

    Raises:
        CompareError: git cannot resolve ``rev`` to a commit of ``ROOT``.
    """
    res = _git('rev-parse', '--verify', '--quiet', f'{rev}^{{commit}}')
    if res.returncode != 0 or not res.stdout.strip():
        raise CompareError(
            f'{option} {rev}: git cannot resolve {rev!r} to a commit of the '
            f'repository {ROOT} (check the name, or fetch it first)')
    return res.stdout.strip()


def export_tree(sha: str, dest: str) -> None:
    """``git archive SHA | tar -x -C DEST``."""
    os.makedirs(dest)
    archive = subprocess.Popen(['git', '-C', ROOT, 'archive', '--format=tar',
                                sha], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    tar = subprocess.run(['tar', '-x', '-C', dest], stdin=archive.stdout,
                         capture_output=True)
    archive.stdout.close()
    err = archive.stderr.read().decode()
    archive.stderr.close()
    if archive.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f'exporting {sha} to {dest} failed: {err}'
                           f'{tar.stderr.decode()}')


def describe_working_tree() -> str:
    """``'working tree (HEAD abc1234[, with uncommitted changes])'``."""
    head = _git('rev-parse', '--short', 'HEAD').stdout.strip() or '?'
    dirty = bool(_git('status', '--porcelain').stdout.strip())
    return (f'working tree (HEAD {head}'
            f"{', with uncommitted changes' if dirty else ''})")


# ----------------------------------------------------------------- workers
class WorkerProcess:
    """A ``tools/cost_worker.py`` process serving one tree."""

    def __init__(self, name: str, tree: str, log_dir: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.name, self.tree = name, tree
        self.log_path = osp.join(log_dir, f'{name}-{os.getpid()}-'
                                 f'{id(self)}.log')
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, tree], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        try:
            self.receive()  # the worker has imported its tree
        except BaseException:
            self.close()
            raise

    def send(self, req: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(req) + '\n')
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker exited: receive() reports it with its log

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        reply = json.loads(line) if line else dict(
            ok=False, error=f'the worker exited (status {self.proc.poll()})')
        if not reply['ok']:
            raise RuntimeError(
                f'{self.name} tree ({self.tree}): {reply["error"]}\n'
                f'its log, last lines:\n{self.log_tail()}')
        return reply

    def request(self, req: dict) -> dict:
        self.send(req)
        return self.receive()

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return ''.join(f.readlines()[-lines:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send(dict(cmd='quit'))
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._log):
            try:
                stream.close()
            except OSError:
                pass


# ----------------------------------------------------------------- report
def paired_ratios(base: Sequence[float], new: Sequence[float]
                  ) -> List[float]:
    """Per-repeat ratios new / base of two equally long series."""
    return [n / b for b, n in zip(base, new)]


def ratio_summary(ratios: Sequence[float], threshold: float) -> dict:
    """Median, min, max of paired ratios and the flag (min > threshold)."""
    out = min_median_max(ratios)
    out['flagged'] = out['min'] > threshold
    return out


def build_row(label: str, present: Sequence[str],
              wall: Dict[str, List[float]], cpu: Dict[str, List[float]],
              memory: Dict[str, Optional[dict]], views: Dict[str, Any],
              threshold: float) -> dict:
    """The report row of one variant.

    Args:
        label (str): The variant's label.
        present (Sequence[str]): The trees (``'base'``, ``'new'``) that have it.
        wall, cpu (dict): Tree -> per-repeat seconds per image (paired by
            index).
        memory (dict): Tree -> ``measure_peak``'s dict, or None.
        views (dict): Tree -> number of views of a batch.
        threshold (float): The flag threshold.

    Returns:
        dict: ``status`` ('both', 'only in base', 'only in new'), per tree
        ``seconds_per_image`` / ``cpu_seconds_per_image`` (min/median/max),
        ``peak_mib``, and, for a variant in both trees, ``time_ratio``,
        ``cpu_time_ratio`` (median/min/max of the paired ratios, ``flagged``),
        ``memory_ratio`` and ``flags`` (names of the flagged ratios).
    """
    status = 'both' if len(present) == 2 else f'only in {present[0]}'
    row: Dict[str, Any] = dict(label=label, status=status, flags=[])
    for tree in present:
        row[tree] = dict(views=views.get(tree),
                         seconds_per_image=min_median_max(wall[tree]),
                         cpu_seconds_per_image=min_median_max(cpu[tree]),
                         seconds=list(wall[tree]),
                         cpu_seconds=list(cpu[tree]))
        mem = memory.get(tree)
        if mem is not None:
            row[tree]['memory'] = mem
            row[tree]['peak_mib'] = mem['peak_kb'] / 1024
    if status != 'both':
        return row
    for key, series in (('time_ratio', wall), ('cpu_time_ratio', cpu)):
        row[key] = ratio_summary(paired_ratios(series['base'], series['new']),
                                 threshold)
        row[key]['paired'] = paired_ratios(series['base'], series['new'])
        if row[key]['flagged']:
            row['flags'].append('time' if key == 'time_ratio' else 'CPU time')
    peaks = [row[t].get('peak_mib') for t in TREES]
    if None not in peaks and peaks[0] > 0:
        row['memory_ratio'] = peaks[1] / peaks[0]
        if row['memory_ratio'] > threshold:
            row['flags'].append('memory')
    return row


def _ratio_text(r: Optional[dict]) -> str:
    if r is None:
        return '-'
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def format_table(rows: Sequence[dict]) -> str:
    """The comparison table in Markdown."""
    lines = ['| Method | base s / image | new s / image | time ratio new/base '
             '(min-max) | base CPU s / image | new CPU s / image | CPU time '
             'ratio (min-max) | base / new peak MiB | memory ratio | flag |',
             '|---|---|---|---|---|---|---|---|---|---|']

    def sec(row: dict, tree: str, key: str) -> str:
        return (f"{row[tree][key]['median']:.3f}" if tree in row else '-')

    for r in rows:
        peaks = '/'.join('-' if r.get(t, {}).get('peak_mib') is None
                         else f"{r[t]['peak_mib']:.0f}" for t in TREES)
        mem = r.get('memory_ratio')
        flag = ('FLAG ' + ', '.join(r['flags']) if r['flags'] else
                '' if r['status'] == 'both' else r['status'])
        lines.append(
            f"| {r['label']} | {sec(r, 'base', 'seconds_per_image')} "
            f"| {sec(r, 'new', 'seconds_per_image')} "
            f"| {_ratio_text(r.get('time_ratio'))} "
            f"| {sec(r, 'base', 'cpu_seconds_per_image')} "
            f"| {sec(r, 'new', 'cpu_seconds_per_image')} "
            f"| {_ratio_text(r.get('cpu_time_ratio'))} | {peaks} "
            f"| {'-' if mem is None else f'{mem:.2f}x'} | {flag} |")
    return '\n'.join(lines)


def _dropped_notes(dropped: Dict[str, Dict[str, Dict[str, Any]]]) -> List[str]:
    """Options a tree's functions did not take, unless the working tree's
    function would have used the same value by default."""
    notes = []
    for tree, funcs in dropped.items():
        for func, kwargs in funcs.items():
            ref = getattr(bench, func, None)
            params = inspect.signature(ref).parameters if ref else {}
            diff = {k: v for k, v in kwargs.items()
                    if k not in params or params[k].default != v}
            if diff:
                notes.append(f"the {tree} tree's {func} takes no "
                             + ', '.join(f'{k} (asked {k}={v!r})'
                                         for k, v in diff.items())
                             + ': measured as that tree does without it')
    return notes


# -------------------------------------------------------------------- run
def _config_keys(configs: Sequence[str], trees: Sequence[str]) -> List[str]:
    """Config paths as the workers take them: relative to the repository
    (each tree reads its own copy) or, outside it, absolute.

    Raises:
        CompareError: A config is in none of ``trees``.
    """
    out = []
    for c in configs:
        path = osp.abspath(c)
        rel = osp.relpath(path, ROOT)
        if rel.startswith('..'):
            found, key = osp.isfile(path), path
        else:
            found, key = any(osp.isfile(osp.join(t, rel)) for t in trees), rel
        if not found:
            raise CompareError(f'CONFIG {c}: no such file in the compared '
                               'trees')
        out.append(key)
    return out


def _measure(workers: Dict[str, WorkerProcess], labels: List[str],
             present: Dict[str, List[str]], warmup: int, repeats: int
             ) -> Tuple[Dict[str, Dict[str, List[float]]],
                        Dict[str, Dict[str, List[float]]]]:
    """Interleaved passes: per round and variant, one pass in each tree that
    has it, the first tree alternating. Returns wall and CPU seconds per
    image, label -> tree -> per-repeat values."""
    wall = {lb: {t: [] for t in present[lb]} for lb in labels}
    cpu = {lb: {t: [] for t in present[lb]} for lb in labels}
    for i in range(warmup + repeats):
        k = i % len(labels)
        shown = []
        for label in labels[k:] + labels[:k]:
            # Per variant, the tree that goes first alternates from round to
            # round (and between neighbouring variants within a round).
            first = (i + labels.index(label)) % 2
            order = TREES if first == 0 else TREES[::-1]
            for tree in order:
                if tree not in present[label]:
                    continue
                res = workers[tree].request(dict(cmd='pass', label=label))
                if i >= warmup:
                    wall[label][tree].append(res['wall'])
                    cpu[label][tree].append(res['cpu'])
            if i >= warmup:
                shown.append(label + ' ' + '/'.join(
                    f'{wall[label][t][-1]:.3f}s' if t in present[label]
                    else '-' for t in TREES))
        print(f'warm-up {i + 1}/{warmup}' if i < warmup else
              f'repeat {i + 1 - warmup}/{repeats} (base/new): '
              + ', '.join(shown), flush=True)
    return wall, cpu


def run(own: argparse.Namespace, args: argparse.Namespace) -> dict:
    """Export the trees, measure and build the report (see the module doc)."""
    base_sha = resolve_rev(own.base, '--base')
    new_sha = resolve_rev(own.new, '--new') if own.new else None
    tmp = tempfile.mkdtemp(prefix='compare_cost_')
    workers: Dict[str, WorkerProcess] = {}
    try:
        trees = dict(base=osp.join(tmp, 'base'), new=ROOT)
        export_tree(base_sha, trees['base'])
        if new_sha:
            trees['new'] = osp.join(tmp, 'new')
            export_tree(new_sha, trees['new'])
        configs = _config_keys(args.configs, list(trees.values()))
        setup = dict(cmd='setup', configs=configs,
                     moase_teachers=args.moase_teachers,
                     telemetry=args.telemetry, size=list(args.size),
                     images=args.images, device=args.device,
                     threads=args.threads, cpu_malloc=args.cpu_malloc,
                     attention_weights=args.attention_weights,
                     precision=args.precision)
        for tree in TREES:
            workers[tree] = WorkerProcess(tree, trees[tree], tmp)
        for tree in TREES:  # both build at once: nothing is timed yet
            workers[tree].send(dict(
                setup, slowdown=own.inject_slowdown if tree == 'new' else 1.0))
        info = {tree: workers[tree].receive() for tree in TREES}
        labels = list(info['base']['labels']) + [
            lb for lb in info['new']['labels']
            if lb not in info['base']['labels']]
        present = {lb: [t for t in TREES if lb in info[t]['labels']]
                   for lb in labels}
        wall, cpu = _measure(workers, labels, present, args.warmup,
                             args.repeats)
        for w in workers.values():
            w.close()
        workers.clear()
        dropped = {t: info[t]['dropped'] for t in TREES}
        memory: Dict[str, Dict[str, Optional[dict]]] = {
            lb: {} for lb in labels}
        if not args.no_memory:
            env = dict(os.environ)
            if args.cpu_malloc == 'default':
                env.update(MALLOC_MMAP_THRESHOLD_=str(bench.MALLOC_THRESHOLD),
                           MALLOC_TRIM_THRESHOLD_=str(bench.MALLOC_THRESHOLD))
            peak = dict(setup, cmd='peak', warmup=max(args.warmup, 1))
            for lb in labels:
                for tree in present[lb]:
                    w = WorkerProcess(tree, trees[tree], tmp, env=env)
                    try:
                        res = w.request(dict(peak, label=lb))
                    finally:
                        w.close()
                    memory[lb][tree] = res['memory']
                    for func, kw in res['dropped'].items():
                        dropped[tree].setdefault(func, {}).update(kw)
                    print(f"peak memory {lb} ({tree}): "
                          f"{res['memory']['peak_kb'] / 1024:.0f} MiB",
                          flush=True)
        rows = [build_row(lb, present[lb], wall[lb], cpu[lb], memory[lb],
                          {t: info[t]['views'].get(lb) for t in present[lb]},
                          own.threshold) for lb in labels]
        sides = dict(
            base=dict(rev=own.base, commit=base_sha, tree=trees['base'],
                      package=info['base']['package'],
                      missing_configs=info['base']['missing']),
            new=dict(rev=own.new, commit=new_sha,
                     description=(f'{own.new} ({new_sha[:10]})' if new_sha
                                  else describe_working_tree()),
                     tree=trees['new'], package=info['new']['package'],
                     missing_configs=info['new']['missing']))
        return dict(sides=sides, rows=rows, notes=_dropped_notes(dropped),
                    dropped=dropped)
    finally:
        for w in workers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison; returns the exit status (1: ``--fail-on-flag`` and
    something is flagged)."""
    own, args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)  # as the workers: the machine line
    machine = machine_description(args.device)
    result = run(own, args)
    rows = result['rows']
    table = format_table(rows)
    flagged = [r['label'] for r in rows if r['flags']]
    sides = result['sides']
    memory_kind = ('CUDA max allocated' if args.device.startswith('cuda') else
                   'peak RSS above the imports')
    print(f"\nBase: {own.base} ({sides['base']['commit'][:10]}); new: "
          f"{sides['new']['description']}.\nMachine: {machine}; device "
          f'{args.device}; plain view {args.size[0]}x{args.size[1]}; '
          f'{args.images} images per pass, {args.repeats} paired repeats after '
          f'{args.warmup} warm-up; ratios: median of the paired ratios '
          f'new/base (min-max); memory: '
          f"{'not measured' if args.no_memory else memory_kind}; "
          f'flag: {FLAG_RULE} ({own.threshold:g}).\n')
    for side in TREES:
        if sides[side]['missing_configs']:
            print(f"Not in the {side} tree: "
                  f"{', '.join(sides[side]['missing_configs'])}")
    for note in result['notes']:
        print(f'Note: {note}')
    print(table)
    print('\n' + (f"Flagged: {', '.join(flagged)}" if flagged else
                  'Nothing flagged.'))
    os.makedirs(osp.dirname(osp.abspath(own.out)), exist_ok=True)
    with open(own.out, 'w') as f:
        json.dump(dict(machine=machine, device=args.device,
                       size=list(args.size), images=args.images,
                       repeats=args.repeats, warmup=args.warmup,
                       threads=args.threads, cpu_malloc=args.cpu_malloc,
                       attention_weights=args.attention_weights,
                       precision=args.precision,
                       memory=None if args.no_memory else memory_kind,
                       threshold=own.threshold, flag_rule=FLAG_RULE,
                       inject_slowdown=own.inject_slowdown,
                       flagged=flagged, table=table, **result), f, indent=2)
    print(f'written: {own.out}')
    return 1 if flagged and own.fail_on_flag else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except CompareError as e:  # a usage error, as argparse's (status 2)
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
