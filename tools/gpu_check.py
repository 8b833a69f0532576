"""One prepared device check: tests, cost of every CTTA method, CPU agreement.

On a CUDA device, with random weights in the MiT-B5 shape (no checkpoint) and
random images that the ACDC configs' own pipelines resize to a 540x960 plain
view (the fabricated "file" is 1080x1920), in stages that each get a share of
``--budget-s`` (default 480 s, the 8 minutes the issue allows):

1. **tests**: ``pytest -m cuda`` over ``tests/`` (the CUDA-marked tests) in a
   subprocess with the stage's time limit; skipped, with a line, without CUDA.
2. **agreement**: one adaptation ``step`` of TENT on the MiT-B0 ACDC config,
   built twice from the same seed (the same random weights) on the same
   fabricated batch, once on the reference (CPU, 1 thread) and once on the
   checked device (``--device``; TF32 off, fp32); the updated model's logits
   and the adapted weights must agree within :data:`TOLERANCES`. With
   ``--device cpu`` the checked side is the CPU at another intra-op thread
   count (another reduction order): still a real check of the step's
   numerics; it is skipped, with a line, on a machine with one CPU.
3. **benchmark**: ``tools/benchmark_ctta.py``'s variants (built with its
   ``build_bench``, timed with its ``run_pass``) for Source, NormStat, TENT,
   CoTTA (14 views), MoASE with the 14-view teacher and with one view,
   MoASE-split (MoASE with ``base_lr=7.5e-6``), ViDA and MoASE++ when its
   config exists, in fp32 and, where ``torch.cuda.is_bf16_supported()``, bf16
   (fp32 only on CPU): images/s, peak memory and the ratios to Source. The
   number of timed repeats is sized from the warm-up pass to fit the stage's
   budget (at most ``--repeats``). Peak memory on CUDA is
   ``torch.cuda.max_memory_allocated`` of a variant's pass minus the
   allocation at its start, plus the variant's resident state (the allocations
   its build and its earlier passes kept), i.e. what a process running that
   variant alone would report; on CPU it is ``benchmark_ctta.child_peak`` (peak
   RSS of a fresh process).
4. **results**: ``OUT/results.json`` and ``OUT/results.md`` (the tables, with
   the device name: ``torch.cuda.get_device_name`` or the CPU from
   ``machine_description``).

``--device cpu --small`` runs the same stages on MiT-B0 with small images, one
image and one repeat (well under 2 minutes on 2 cores), so that CI can test it.

    python tools/gpu_check.py [--device cuda|cpu] [--small] [--size H W]
        [--images N] [--repeats N] [--warmup N] [--threads N]
        [--budget-s 480] [--skip-tests] [--no-memory] [--out work_dirs/gpu_check]

Exit status 0; 1 when a stage failed (a test failed, the agreement is outside
its tolerance, a variant could not be measured); 2 for unusable options.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import benchmark_ctta as bench  # noqa: E402
from mmseg_moase.utils.host import host_info  # noqa: E402
from tools.bench_utils import (machine_description,  # noqa: E402
                               min_median_max)

#: MoASE teacher modes measured: the 14-view CoTTA teacher and one view.
TEACHERS = ('cotta', 'single')
#: MoASE-split: MoASE with the pre-trained weights at CoTTA's rate (there is no
#: B5/B0 ACDC config of it; the synthetic one is this override).
SPLIT_LABEL, SPLIT_OVERRIDES = 'MoASE-split', dict(base_lr=7.5e-6)
VIDA_CONFIG = osp.join(ROOT, 'configs', 'vida',
                       'vida_mit-{bb}_3rounds_cityscapes-to-acdc-960x540.py')
#: Measured when present (label -> config path pattern).
OPTIONAL_CONFIGS = {
    'MoASE++': [osp.join(ROOT, 'configs', d, f'{n}_mit-{{bb}}_3rounds_'
                         'cityscapes-to-acdc-960x540.py')
                for d in ('moase', 'moase_pp', 'moasepp', 'moase++')
                for n in ('moase++', 'moase_pp', 'moasepp', 'moase-pp')],
}
AGREEMENT_CONFIG = osp.join(ROOT, 'configs', 'baselines',
                            'tent_mit-b0_3rounds_cityscapes-to-acdc-960x540.py')
#: Agreement tolerances: logits of the updated model, max |a - b| relative to
#: max |reference|; adapted weights, the L2 norm of the difference of the
#: updates (weights after - before) relative to the reference update's norm.
#: Not an element-wise bound: Adam's first step moves each weight by about
#: lr * sign(gradient), so a weight whose gradient is at the noise floor may
#: move differently on another device (2 lr at most; one such weight of the
#: ~7,700 B0 norm weights costs ~0.02); 0.05 allows a few, and any systematic
#: error (a wrong kernel, a missed parameter) exceeds it by far.
TOLERANCES = dict(logits_rel=1e-3, update_rel=0.05)
#: Shares of the budget: the tests and the agreement stage get at most these
#: fractions; the benchmark gets what is left (minus RESERVE_S for the files).
SHARES = dict(tests=0.2, agreement=0.1)
RESERVE_S = 5.0
SIZES = dict(cuda=(540, 960), small=(64, 128))
AGREEMENT_SIZES = dict(cuda=(128, 256), small=(64, 128))


class Stage:
    """Wall-clock bookkeeping of one stage within the overall budget."""

    def __init__(self, name: str, limit_s: float) -> None:
        self.name, self.limit_s = name, max(limit_s, 1.0)
        self.t0 = time.perf_counter()
        log(f'[{name}] start (budget {self.limit_s:.0f} s)')

    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self.t0

    def left(self) -> float:
        """Seconds of the stage's budget left (negative when over)."""
        return self.limit_s - self.elapsed()

    def done(self, result: dict) -> dict:
        """``result`` with the stage's seconds and budget added; logged."""
        result.update(seconds=round(self.elapsed(), 2),
                      budget_s=round(self.limit_s, 1),
                      within_budget=self.elapsed() <= self.limit_s)
        log(f"[{self.name}] {result['status']} in {result['seconds']:.1f} s"
            + ('' if result['within_budget'] else ' (OVER its budget)'))
        return result


def log(msg: str) -> None:
    """Progress line on stdout, flushed."""
    print(msg, flush=True)


# ------------------------------------------------------------------ options
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Options; sizes and counts default by device and ``--small``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu', help="'cuda' (default when available), "
                        "'cuda:N' or 'cpu'")
    parser.add_argument('--small', action='store_true',
                        help='MiT-B0 configs, small images, 1 image, 1 repeat '
                        '(the CI mode, with --device cpu)')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help='plain-view size of the benchmark (default 540 960; '
                        '64 128 with --small)')
    parser.add_argument('--images', type=int,
                        help='fabricated images per pass (default 2; 1 with '
                        '--small)')
    parser.add_argument('--repeats', type=int,
                        help='most timed repeats per precision; fewer when the '
                        'budget needs it (default 5; 1 with --small)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='warm-up passes per precision (default 1)')
    parser.add_argument('--threads', type=int,
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument('--budget-s', type=float, default=480.0,
                        help='wall-clock budget of the whole check in seconds '
                        '(default 480)')
    parser.add_argument('--skip-tests', action='store_true',
                        help='skip stage 1 (pytest -m cuda)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory figures')
    parser.add_argument('--out', default=osp.join('work_dirs', 'gpu_check'),
                        help='folder of results.json and results.md (default '
                        '%(default)s)')
    args = parser.parse_args(argv)
    args.kind = 'cuda' if args.device.startswith('cuda') else 'cpu'
    if args.kind == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available to this '
                     f'torch ({torch.__version__}); run on a CUDA machine, or '
                     'pass --device cpu --small for the CPU check')
    if args.kind == 'cpu' and args.device != 'cpu':
        parser.error(f"--device {args.device}: use 'cuda', 'cuda:N' or 'cpu'")
    args.backbone = 'b0' if args.small else 'b5'
    if args.size is None:
        args.size = list(SIZES['small' if args.small else 'cuda'])
    if args.images is None:
        args.images = 1 if args.small else 2
    if args.repeats is None:
        args.repeats = 1 if args.small else 5
    for name in ('images', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.warmup < 1:
        parser.error('--warmup must be >= 1 (the warm-up pass sizes the '
                     f'repeats), got {args.warmup}')
    if args.budget_s <= RESERVE_S:
        parser.error(f'--budget-s must exceed {RESERVE_S:g} s, got '
                     f'{args.budget_s:g}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    return args


def precisions(args: argparse.Namespace) -> Tuple[List[str], Optional[str]]:
    """The precisions to measure, and why bf16 is left out (or None)."""
    if args.kind != 'cuda':
        return ['fp32'], 'CPU: fp32 only (bf16 is emulated and slow on most CPUs)'
    if not torch.cuda.is_bf16_supported():
        return ['fp32'], (f'{torch.cuda.get_device_name(args.device)} has no '
                          'bf16 support (torch.cuda.is_bf16_supported())')
    return ['fp32', 'bf16'], None


def bench_args(args: argparse.Namespace, configs: Sequence[str],
               precision: str) -> argparse.Namespace:
    """``tools/benchmark_ctta.py``'s options (its defaults for the rest: the
    attention switch, the CPU allocator) for one precision."""
    argv = [*configs, '--device', args.device, '--size', *map(str, args.size),
            '--images', str(args.images), '--repeats', str(args.repeats),
            '--warmup', str(args.warmup), '--precision', precision]
    if args.threads:
        argv += ['--threads', str(args.threads)]
    return bench.parse_args(argv)


# ----------------------------------------------------------------- variants
def check_variants(backbone: str) -> List[bench.Variant]:
    """Every CTTA method of the check on the ``backbone``'s ACDC configs."""
    configs = list(bench.DEFAULT_CONFIGS[backbone])
    configs.append(VIDA_CONFIG.format(bb=backbone))
    for path in configs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config {path} is missing: the check needs '
                                    "every method's Cityscapes->ACDC config")
    variants = bench.expand_variants(configs, TEACHERS)
    moase = next(v for v in variants if v.label.startswith('MoASE '))
    variants.append(bench.Variant(SPLIT_LABEL, moase.config,
                                  dict(SPLIT_OVERRIDES)))
    for label, patterns in OPTIONAL_CONFIGS.items():
        found = [p.format(bb=backbone) for p in patterns
                 if osp.isfile(p.format(bb=backbone))]
        if found:
            variants.append(bench.Variant(label, found[0]))
    return variants


# -------------------------------------------------------------- stage 1: tests
def run_tests(args: argparse.Namespace, limit_s: float) -> dict:
    """``pytest -m cuda`` over ``tests/`` in a subprocess (stage 1)."""
    stage = Stage('tests', limit_s)
    if args.skip_tests:
        return stage.done(dict(status='skipped', reason='--skip-tests'))
    if args.kind != 'cuda':
        return stage.done(dict(status='skipped', reason='no CUDA device: the '
                               'CUDA-marked tests need one'))
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
           '-m', 'cuda', osp.join(ROOT, 'tests')]
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                             timeout=stage.limit_s)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b'')[-2000:]
        return stage.done(dict(status='failed', reason='timed out after '
                               f'{stage.limit_s:.0f} s', command=cmd,
                               output_tail=tail.decode() if isinstance(
                                   tail, bytes) else tail))
    lines = (res.stdout + res.stderr).strip().splitlines()
    summary = lines[-1] if lines else ''
    if res.returncode == 5:  # pytest: no tests collected
        status, reason = 'skipped', 'no test in tests/ carries the cuda marker'
    else:
        status = 'passed' if res.returncode == 0 else 'failed'
        reason = summary
    log(f'[tests] {summary}')
    return stage.done(dict(status=status, reason=reason, returncode=res.returncode,
                           command=cmd, output_tail='\n'.join(lines[-30:])))


# ---------------------------------------------------------- stage 2: agreement
def _one_step(device: str, threads: int, size: Tuple[int, int]
              ) -> Dict[str, Any]:
    """TENT's first step on the B0 ACDC config on ``device`` (fp32, TF32 off):
    the logits of the updated model on the same image, the adapted weights'
    updates (CPU tensors) and the optimiser's learning rate."""
    prev_threads = torch.get_num_threads()
    prev_tf32 = (torch.backends.cuda.matmul.allow_tf32,
                 torch.backends.cudnn.allow_tf32)
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        b = bench.build_bench(bench.Variant('TENT', AGREEMENT_CONFIG), size, 1,
                              device)
        method, batch = b.method, b.batches[0]
        params = {n: p for n, p in method.model.named_parameters()
                  if p.requires_grad}
        before = {n: p.detach().cpu().clone() for n, p in params.items()}
        method.step(copy.deepcopy(batch))
        method.after_step()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        with torch.no_grad():
            pred = method.predict(method.model,
                                  method.plain_view(copy.deepcopy(batch)))
        logits = pred[0].seg_logits.data.detach().float().cpu()
        update = {n: p.detach().cpu() - before[n] for n, p in params.items()}
        lr = method.optim_wrapper.optimizer.param_groups[0]['lr']
        return dict(logits=logits, update=update, lr=lr,
                    changed=sum(int((u != 0).sum()) for u in update.values()))
    finally:
        torch.set_num_threads(prev_threads)
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = prev_tf32


def run_agreement(args: argparse.Namespace, limit_s: float) -> dict:
    """One TENT step on the reference (CPU, 1 thread) and on the checked side;
    logits and adapted weights compared within :data:`TOLERANCES` (stage 2)."""
    stage = Stage('agreement', limit_s)
    size = AGREEMENT_SIZES['small' if args.small else 'cuda']
    if args.kind == 'cuda':
        checked, threads, what = args.device, 1, f'{args.device} vs CPU'
    else:
        threads = args.threads if args.threads and args.threads > 1 else min(
            os.cpu_count() or 1, 4)
        if threads < 2:
            return stage.done(dict(
                status='skipped', reason='one CPU: no other thread count to '
                'compare the CPU with (pass --threads N > 1 to force one)'))
        checked, what = 'cpu', f'CPU {threads} threads vs CPU 1 thread'
    log(f'[agreement] TENT step on MiT-B0 at {size[0]}x{size[1]}: {what}')
    ref = _one_step('cpu', 1, size)
    got = _one_step(checked, threads, size)
    ref_max = float(ref['logits'].abs().max())
    logits_rel = float((got['logits'] - ref['logits']).abs().max()) / max(
        ref_max, 1e-12)
    names = sorted(ref['update'])
    ref_u = torch.cat([ref['update'][n].flatten().double() for n in names])
    got_u = torch.cat([got['update'][n].flatten().double() for n in names])
    update_rel = float((got_u - ref_u).norm() / ref_u.norm().clamp_min(1e-30))
    update_diff = float((got_u - ref_u).abs().max())
    update_rel_lr = update_diff / ref['lr']
    label_agree = float((got['logits'].argmax(0) ==
                         ref['logits'].argmax(0)).float().mean())
    ok = (logits_rel <= TOLERANCES['logits_rel']
          and update_rel <= TOLERANCES['update_rel']
          and ref['changed'] > 0)
    log(f'[agreement] logits max|diff|/max|ref| {logits_rel:.2e} (tol '
        f"{TOLERANCES['logits_rel']:g}), weight updates |diff|/|ref| "
        f"{update_rel:.2e} (tol {TOLERANCES['update_rel']:g}; max|diff| "
        f"{update_rel_lr:.2e} lr), labels equal {label_agree:.2%}, "
        f"{ref['changed']} weights moved")
    return stage.done(dict(
        status='passed' if ok else 'failed', compared=what, method='TENT',
        config=osp.relpath(AGREEMENT_CONFIG, ROOT), size=list(size),
        tolerances=TOLERANCES, logits_rel=logits_rel,
        update_rel=update_rel, update_max_abs_diff=update_diff, lr=ref['lr'],
        update_rel_lr=update_rel_lr, label_agreement=label_agree,
        weights_moved=ref['changed'],
        reason='' if ok else ('no weight moved in the reference step'
                              if ref['changed'] == 0 else 'outside tolerance')))


# ---------------------------------------------------------- stage 3: benchmark
class CudaMemory:
    """Per-variant CUDA peak in one process holding every variant: the peak of
    a pass over the allocation at its start, plus the variant's resident state
    (what its build and its earlier passes left allocated)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.resident: Dict[str, int] = {}
        self.peak: Dict[str, int] = {}

    def allocated(self) -> int:
        """Bytes allocated on the device now."""
        return torch.cuda.memory_allocated(self.device)

    def add_resident(self, label: str, nbytes: int) -> None:
        """Account ``nbytes`` more (or fewer) as ``label``'s state."""
        self.resident[label] = self.resident.get(label, 0) + nbytes

    def run(self, b: bench.Bench, precision: str, record: bool
            ) -> Tuple[float, float]:
        """``run_pass`` with the accounting; the peak is kept when ``record``."""
        label = b.variant.label
        torch.cuda.synchronize(self.device)
        start = self.allocated()
        torch.cuda.reset_peak_memory_stats(self.device)
        times = bench.run_pass(b, self.device, precision)
        transient = torch.cuda.max_memory_allocated(self.device) - start
        if record:
            self.peak[label] = max(self.peak.get(label, 0),
                                   self.resident.get(label, 0) + transient)
        self.add_resident(label, self.allocated() - start)
        return times


def _rows(variants: Sequence[bench.Variant], benches: Dict[str, bench.Bench],
          times: Dict[str, List[float]], cpu_times: Dict[str, List[float]],
          peaks_mib: Dict[str, Optional[float]]) -> List[dict]:
    """Rows in ``benchmark_ctta``'s shape (``format_table`` reads them) plus
    ``images_per_s``."""
    ref_t = statistics.median(times[bench.REFERENCE])
    ref_c = statistics.median(cpu_times[bench.REFERENCE])
    ref_m = peaks_mib.get(bench.REFERENCE)
    rows = []
    for v in variants:
        med = statistics.median(times[v.label])
        row = dict(label=v.label, config=osp.relpath(v.config, ROOT),
                   overrides=v.overrides, views=benches[v.label].views,
                   images_per_s=1.0 / med,
                   seconds_per_image=min_median_max(times[v.label]),
                   time_ratio=med / ref_t,
                   cpu_seconds_per_image=min_median_max(cpu_times[v.label]),
                   cpu_time_ratio=statistics.median(cpu_times[v.label]) / ref_c)
        mem = peaks_mib.get(v.label)
        if mem is not None:
            row['peak_mib'] = mem
            row['memory_ratio'] = mem / ref_m if ref_m else float('nan')
        rows.append(row)
    return rows


def _measure_precision(args: argparse.Namespace, variants: List[bench.Variant],
                       benches: Dict[str, bench.Bench], precision: str,
                       limit_s: float, cuda_mem: Optional[CudaMemory]) -> dict:
    """Warm-up, timed repeats sized to ``limit_s``, memory; one precision."""
    t0 = time.perf_counter()
    order = [benches[v.label] for v in variants]
    times: Dict[str, List[float]] = {v.label: [] for v in variants}
    cpu_times: Dict[str, List[float]] = {v.label: [] for v in variants}

    def one_pass(b: bench.Bench, record: bool) -> Tuple[float, float]:
        if cuda_mem is not None:
            return cuda_mem.run(b, precision, record)
        return bench.run_pass(b, args.device, precision)

    round_s = 0.0
    for i in range(args.warmup):
        r0 = time.perf_counter()
        for b in order:
            one_pass(b, False)
        round_s = time.perf_counter() - r0
        log(f'[benchmark {precision}] warm-up {i + 1}/{args.warmup}: '
            f'{round_s:.1f} s')
    bargs = bench_args(args, [v.config for v in variants], precision)
    memory_s = (0.0 if args.no_memory or cuda_mem is not None
                else 2.5 * round_s + 6.0 * len(variants))  # child processes
    left = limit_s - (time.perf_counter() - t0) - memory_s
    repeats = max(1, min(args.repeats, int(left // max(round_s, 1e-9))))
    for i in range(repeats):
        k = i % len(order)
        for b in order[k:] + order[:k]:  # rotate: no variant always first
            t, c = one_pass(b, True)
            times[b.variant.label].append(t)
            cpu_times[b.variant.label].append(c)
        log(f'[benchmark {precision}] repeat {i + 1}/{repeats}: ' + ', '.join(
            f'{v.label} {1 / times[v.label][-1]:.2f} img/s' for v in variants))
    peaks_mib: Dict[str, Optional[float]] = {}
    if cuda_mem is not None and not args.no_memory:
        peaks_mib = {k: v / 2**20 for k, v in cuda_mem.peak.items()}
        cuda_mem.peak.clear()
    elif not args.no_memory:
        for v in variants:
            log(f'[benchmark {precision}] peak memory: {v.label}')
            peaks_mib[v.label] = bench.child_peak(v, bargs)['peak_kb'] / 1024
    rows = _rows(variants, benches, times, cpu_times, peaks_mib)
    return dict(precision=precision, repeats=repeats, max_repeats=args.repeats,
                warmup=args.warmup, warmup_round_s=round_s,
                memory=None if args.no_memory else (
                    'CUDA max allocated (per variant, see the docstring)'
                    if cuda_mem is not None else 'peak RSS above the imports '
                    '(fresh process per variant)'),
                rows=rows, table=bench.format_table(rows))


def run_benchmark(args: argparse.Namespace, limit_s: float) -> dict:
    """Every variant in every precision (stage 3)."""
    stage = Stage('benchmark', limit_s)
    precs, no_bf16 = precisions(args)
    if no_bf16:
        log(f'[benchmark] bf16 left out: {no_bf16}')
    variants = check_variants(args.backbone)
    log(f'[benchmark] {len(variants)} variants, MiT-{args.backbone.upper()}, '
        f'plain view {args.size[0]}x{args.size[1]}, {args.images} image(s) per '
        f'pass: ' + ', '.join(v.label for v in variants))
    bargs = bench_args(args, [v.config for v in variants], precs[0])
    cuda_mem = CudaMemory(args.device) if args.kind == 'cuda' else None
    benches: Dict[str, bench.Bench] = {}
    errors: Dict[str, str] = {}
    for v in variants:
        before = cuda_mem.allocated() if cuda_mem else 0
        try:
            benches[v.label] = bench.build_bench(
                v, tuple(args.size), args.images, args.device,
                attention_weights=bargs.attention_weights,
                cpu_malloc=bargs.cpu_malloc)
        except Exception as e:  # reported, the other variants still run
            errors[v.label] = f'{type(e).__name__}: {e}'
            log(f'[benchmark] {v.label}: build failed: {errors[v.label]}')
            continue
        if cuda_mem:
            cuda_mem.add_resident(v.label, cuda_mem.allocated() - before)
    if bench.REFERENCE not in benches:
        return stage.done(dict(status='failed', reason='Source could not be '
                               'built', errors=errors))
    variants = [v for v in variants if v.label in benches]
    log(f'[benchmark] built in {stage.elapsed():.1f} s')
    results: Dict[str, dict] = {}
    for i, prec in enumerate(precs):
        done_rounds = [r['warmup_round_s'] for r in results.values()]
        if done_rounds and stage.left() < 2 * max(done_rounds):
            no_bf16 = (f'{prec} left out: {stage.left():.0f} s of the budget '
                       f'left, less than a warm-up and a repeat '
                       f'(~{2 * max(done_rounds):.0f} s); raise --budget-s')
            log(f'[benchmark] {no_bf16}')
            break
        share = stage.left() / (len(precs) - i)
        results[prec] = _measure_precision(args, variants, benches, prec,
                                           share, cuda_mem)
        log(f'\n{prec}:\n{results[prec]["table"]}\n')
    return stage.done(dict(status='failed' if errors else 'passed',
                           reason='; '.join(f'{k}: {v}' for k, v in
                                            errors.items()),
                           errors=errors, precisions=results,
                           bf16_left_out=no_bf16,
                           size=list(args.size), images=args.images))


# ------------------------------------------------------------ stage 4: files
def summary_table(benchmark: dict) -> str:
    """Markdown: per method images/s, peak MiB and ratios, one column group per
    precision."""
    precs = list(benchmark.get('precisions', {}))
    if not precs:
        return '(no benchmark rows)'
    head = ['Method', 'views']
    for p in precs:
        head += [f'{p} images/s', f'{p} time ratio', f'{p} peak MiB',
                 f'{p} memory ratio']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    by_prec = {p: {r['label']: r for r in benchmark['precisions'][p]['rows']}
               for p in precs}
    for label, first in by_prec[precs[0]].items():
        cells = [label, str(first['views'])]
        for p in precs:
            r = by_prec[p].get(label)
            mem = None if r is None else r.get('peak_mib')
            cells += (['-'] * 4 if r is None else [
                f"{r['images_per_s']:.2f}", f"{r['time_ratio']:.2f}x",
                '-' if mem is None else f'{mem:.0f}',
                '-' if mem is None else f"{r['memory_ratio']:.2f}x"])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def device_name(args: argparse.Namespace) -> str:
    """The GPU's name, or the CPU's (``host_info``)."""
    if args.kind == 'cuda':
        return torch.cuda.get_device_name(args.device)
    return host_info()['cpu'] or 'CPU'


def write_results(args: argparse.Namespace, report: dict) -> Tuple[str, str]:
    """``results.json`` and ``results.md`` under ``args.out`` (stage 4)."""
    os.makedirs(args.out, exist_ok=True)
    json_path = osp.join(args.out, 'results.json')
    md_path = osp.join(args.out, 'results.md')
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=2, default=str)
    st = report['stages']
    bm = st['benchmark']
    lines = [f"# Device check: {report['device_name']}", '',
             f"Machine: {report['machine']}; device `{report['device']}`; "
             f"MiT-{report['backbone'].upper()}, random weights, plain view "
             f"{args.size[0]}x{args.size[1]}, {args.images} image(s) per pass; "
             f"{report['total_s']:.0f} s of a {args.budget_s:.0f} s budget.", '',
             '| Stage | status | seconds | note |', '|---|---|---|---|']
    for name, s in st.items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} | "
                     f"{s.get('reason', '')} |")
    ag = st['agreement']
    if ag['status'] != 'skipped':
        lines += ['', f"Agreement ({ag['compared']}, one {ag['method']} step, "
                  f"{ag['size'][0]}x{ag['size'][1]}): logits max|diff|/max|ref| "
                  f"{ag['logits_rel']:.2e} (tolerance "
                  f"{ag['tolerances']['logits_rel']:g}); weight updates "
                  f"|diff|/|ref| {ag['update_rel']:.2e} (tolerance "
                  f"{ag['tolerances']['update_rel']:g}; max|diff| "
                  f"{ag['update_rel_lr']:.2e} lr); "
                  f"labels equal {ag['label_agreement']:.2%}."]
    lines += ['', '## Summary', '', summary_table(bm)]
    for p, res in bm.get('precisions', {}).items():
        lines += ['', f"## {p}: {res['repeats']} timed repeat(s) after "
                  f"{res['warmup']} warm-up; memory: {res['memory']}", '',
                  res['table']]
    with open(md_path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return json_path, md_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stages; returns the exit status (0, or 1 when a stage failed)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    name = device_name(args)
    log(f'Device check on {name} ({args.device}), MiT-{args.backbone.upper()}, '
        f'budget {args.budget_s:.0f} s')

    def left() -> float:
        return args.budget_s - RESERVE_S - (time.perf_counter() - t0)

    stages = {}
    stages['tests'] = run_tests(args, SHARES['tests'] * args.budget_s)
    stages['agreement'] = run_agreement(args, min(
        SHARES['agreement'] * args.budget_s, left()))
    stages['benchmark'] = run_benchmark(args, left())
    total = time.perf_counter() - t0
    report = dict(device_name=name, machine=machine_description(args.device),
                  device=args.device, backbone=args.backbone,
                  small=args.small, budget_s=args.budget_s, total_s=total,
                  within_budget=total <= args.budget_s,
                  options={k: v for k, v in vars(args).items()},
                  stages=stages)
    json_path, md_path = write_results(args, report)
    failed = [k for k, s in stages.items() if s['status'] == 'failed']
    log(f'\n{summary_table(stages["benchmark"])}\n')
    log(f'written: {json_path}, {md_path}; {total:.0f} s of {args.budget_s:.0f} '
        f"s{'' if total <= args.budget_s else ' (OVER budget)'}; "
        + (f"FAILED: {', '.join(failed)}" if failed else 'all stages passed '
           'or skipped'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
