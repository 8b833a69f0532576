"""Cost of adaptation: seconds per image and peak memory of every CTTA method.

Every method (and MoASE teacher mode) is measured relative to **Source inference
of the same backbone at the same input size, in the same invocation**. The
models and methods are built from the given CTTA configs the way ``CTTALoop``
builds and starts them (``build_ctta_method`` with the stream's plain view,
``prepare_ctta_model``, ``start_ctta_method`` with the config's hooks of the
``before_ctta`` hook point, e.g. ``EMATeacherHook``; ``on_pass_start``; per
image ``step`` and ``after_step``), on random
fabricated images pushed through the config's own test pipeline (single-view,
or the ``tta_pipeline`` of multi-view methods), so no dataset or checkpoint is
needed. ``--size H W`` is the size of the plain view (scale 1.0, unflipped):
the fabricated "file" is scaled so that the pipeline's own resize gives it.

Timing: all variants are built in this process; after ``--warmup`` passes over
the images, ``--repeats`` passes run the variants interleaved (the order rotates
from repeat to repeat), and a repeat's figure is its mean seconds per image,
wall-clock and CPU time of this process (``time.process_time``). On a shared
machine the CPU time of a ``--threads 1`` run is the steadier of the two: it
does not count the time other processes hold the cores.
Peak memory: one fresh child process per variant builds it, runs the warm-up
images, resets the peak counter and runs the images once more. On CPU the peak
is the peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
RSS after the imports, i.e. model(s) + method state + step, the counterpart of
CUDA's max allocated on GPU.

CPU allocator (``--cpu-malloc``): by default every variant runs as
``tools/test_ctta.py`` runs it on CPU, with glibc keeping freed memory for reuse
(``ctta_cfg.cpu_malloc='keep'``, :mod:`mmseg_moase.utils.cpu_malloc`), in the
timed process and in the memory children alike; the peak RSS is then the heap's
high-water mark. ``--cpu-malloc default`` measures glibc's own behaviour (every
block above the mmap threshold gets fresh pages); its memory children fix the
mmap threshold at 128 KiB (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``)
so that a freed tensor leaves the RSS at once: by default glibc raises the
threshold to the largest freed block (up to 32 MiB) and keeps such blocks in its
heap, which makes the RSS peak depend on the order of allocations more than on
the memory a step needs.

    python tools/benchmark_ctta.py [CONFIG ...] [--size H W] [--images 2]
        [--repeats 3] [--warmup 1] [--device cpu|cuda] [--threads N]
        [--moase-teachers cotta single single-adapters single-banded]
        [--no-memory] [--attention-weights] [--telemetry]
        [--cpu-malloc keep|default] [--precision fp32|bf16]
        [--out work_dirs/benchmark_ctta.json]

Without CONFIGs: the Cityscapes -> ACDC configs (Source, NormStat, TENT, CoTTA,
MoASE; 14-view teacher) of MiT-B0 at 256x512 on CPU, of MiT-B5 at 540x960 on GPU.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.bench_utils import (machine_description,  # noqa: E402
                               min_median_max, proc_status_kb, reset_peak_rss,
                               run_in_child)
from mmseg_moase.utils.cpu_malloc import CPU_MALLOC_MODES  # noqa: E402
from mmseg_moase.utils.precision import (PRECISIONS,  # noqa: E402
                                         step_precision)

METHOD_CONFIGS = ('baselines/source', 'baselines/norm_stat', 'baselines/tent',
                  'baselines/cotta', 'moase/moase')
DEFAULT_CONFIGS = {
    bb: [osp.join(ROOT, 'configs', f'{m}_mit-{bb}_3rounds_cityscapes-to-acdc-'
                  '960x540.py') for m in METHOD_CONFIGS]
    for bb in ('b0', 'b5')}
DEFAULT_SIZES = dict(cpu=(256, 512), cuda=(540, 960))

#: MoASE configs are measured in these teacher modes: name -> method overrides.
MOASE_TEACHERS = {
    'cotta': dict(teacher='cotta'),
    'single': dict(teacher='single'),
    'single-adapters': dict(teacher='single', trainable='adapters'),
    'single-banded': dict(teacher='single', banded_loss=True),
}
#: Targets of the cost-of-adaptation issue: label -> (time ratio, memory ratio).
TARGETS = {
    'CoTTA': (30.0, None),
    'MoASE teacher=cotta': (30.0, None),
    'MoASE teacher=single': (4.0, 2.0),
    'MoASE teacher=single trainable=adapters': (3.0, None),
    'MoASE teacher=single banded_loss=True': (4.0, 2.0),
}
REFERENCE = 'Source'
#: glibc mmap/trim threshold of the memory children (bytes).
MALLOC_THRESHOLD = 128 * 1024


@dataclass
class Variant:
    """One measured row: a config and the overrides of its ``ctta_method``."""

    label: str
    config: str
    overrides: Dict[str, Any] = field(default_factory=dict)
    #: Record what ``CTTALoop`` records with ``ctta_cfg.telemetry=True`` in a
    #: step (the method's statistics, the student's predictions, the model's
    #: telemetry modules); the per-pass drift and the student's IoU sums are
    #: not per-step costs and are left out.
    telemetry: bool = False


def expand_variants(configs: Sequence[str], moase_teachers: Sequence[str],
                    telemetry: bool = False) -> List[Variant]:
    """One variant per config; a MoASE config gives one per teacher mode;
    with ``telemetry`` every adapting variant also runs with telemetry on
    (its label + ``' +telemetry'``), side by side with the plain one."""
    from mmengine.config import Config
    variants = []
    for path in configs:
        mtype = Config.fromfile(path).ctta_method['type']
        if mtype != 'MoASE':
            variants.append(Variant(mtype, path))
            continue
        for name in moase_teachers:
            over = MOASE_TEACHERS[name]
            label = 'MoASE ' + ' '.join(f'{k}={v}' for k, v in over.items())
            variants.append(Variant(label, path, dict(over)))
    if telemetry:
        variants += [Variant(v.label + ' +telemetry', v.config,
                             dict(v.overrides), telemetry=True)
                     for v in list(variants) if v.label != REFERENCE]
    labels = [v.label for v in variants]
    if REFERENCE not in labels:
        raise ValueError(f'the ratios are relative to {REFERENCE}: add a Source '
                         'config (e.g. configs/baselines/source_mit-b0_3rounds_'
                         'cityscapes-to-acdc-960x540.py)')
    if len(set(labels)) != len(labels):
        raise ValueError(f'two configs give the same method: {labels}')
    return variants


def _file_pipeline(pipeline: Sequence[dict]) -> List[dict]:
    """``pipeline`` reading ``results['img']`` and loading no annotations."""
    out = []
    for t in copy.deepcopy(list(pipeline)):
        if t['type'] == 'LoadImageFromFile':
            t['type'] = 'LoadImageFromNDArray'
        elif t['type'] == 'LoadAnnotations':
            continue
        elif t['type'] == 'TestTimeAug':
            t['transforms'] = [
                group for group in ([s for s in g if s['type'] != 'LoadAnnotations']
                                    for g in t['transforms']) if group]
        out.append(t)
    return out


def fabricate_batches(cfg, multi_view: bool, size: Tuple[int, int],
                      num_images: int, seed: int = 0) -> List[dict]:
    """Random images through the config's pipeline, collated as the loader does.

    The image is made so that the single-view test pipeline's plain view is
    ``size`` (H, W), whatever resize the pipeline applies to the loaded file.
    """
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    stream = cfg.ctta_stream
    single = Compose(_file_pipeline(stream.dataloader.dataset.pipeline))
    probe = single(dict(img=np.zeros((*size, 3), np.uint8)))['inputs']
    fh, fw = probe.shape[-2] / size[0], probe.shape[-1] / size[1]
    file_size = (round(size[0] / fh), round(size[1] / fw))
    pipeline = single if not multi_view else Compose(
        _file_pipeline(stream.tta_pipeline))
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num_images):
        img = rng.integers(0, 256, (*file_size, 3), dtype=np.uint8)
        batches.append(pseudo_collate([pipeline(dict(img=img))]))
    return batches


@dataclass
class Bench:
    """A built variant: the method (holding the model) and what a step needs."""

    variant: Variant
    method: Any
    hooks: List[Any]
    batches: List[dict]
    views: int


def build_bench(variant: Variant, size: Tuple[int, int], num_images: int,
                device: str, seed: int = 0, attention_weights: bool = False,
                cpu_malloc: str = 'default') -> Bench:
    """Model, method and fabricated batches of one variant, as ``CTTALoop``
    builds them (:func:`prepare_ctta_model` with ``cpu_malloc`` and, unless
    ``attention_weights``, the attention switch)."""
    import mmseg_moase  # noqa: F401  (registers models, methods, hooks)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmseg.registry import MODELS
    from mmseg_moase.engine.loops.model_prep import (build_ctta_hooks,
                                                     hook_caller,
                                                     prepare_ctta_model,
                                                     start_ctta_method)
    from mmseg_moase.engine.telemetry import set_module_telemetry
    from mmseg_moase.methods.base import split_views
    from mmseg_moase.methods.builder import build_ctta_method
    init_default_scope('mmseg')
    cfg = Config.fromfile(variant.config)
    method_cfg = copy.deepcopy(cfg.ctta_method)
    method_cfg.update(variant.overrides)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model).to(device)  # random weights: timing only
    prepare_ctta_model(model, cpu_malloc, skip_weights=not attention_weights)
    stream = cfg.get('ctta_stream', {})
    method = build_ctta_method(
        method_cfg, stream.get('plain_view_index'),
        stream.get('dataloader', {}).get('dataset', {}).get('pipeline', ()),
        telemetry=variant.telemetry)
    hooks = build_ctta_hooks(cfg.get('custom_hooks', []))
    try:  # as CTTALoop starts it, the hooks called without a runner
        start_ctta_method(method, model, hook_caller(hooks))
    except ValueError as e:
        raise ValueError(f'{variant.config}: {variant.label}: {e}') from None
    if variant.telemetry:  # as the loop's telemetry switches it on
        set_module_telemetry(method.segmentor, True)
    method.on_pass_start(0, 'benchmark')
    batches = fabricate_batches(cfg, method.multi_view, size, num_images, seed)
    return Bench(variant, method, hooks, batches, len(split_views(batches[0])))


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def run_image(bench: Bench, batch: dict, device: str,
              precision: str = 'fp32') -> Tuple[float, float]:
    """Wall and CPU seconds of one CTTA iteration: step (under ``precision``,
    as ``CTTALoop``) and after_step (the EMA teacher's update, the restore)."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with step_precision(precision, torch.device(device).type):
        bench.method.step(batch)
    bench.method.after_step()
    if bench.variant.telemetry:
        bench.method.step_stats()
        bench.method.student_predictions()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def run_pass(bench: Bench, device: str,
             precision: str = 'fp32') -> Tuple[float, float]:
    """Mean wall and CPU seconds per image over one pass of the bench's images."""
    times = [run_image(bench, copy.deepcopy(b), device, precision)
             for b in bench.batches]
    return (sum(t for t, _ in times) / len(times),
            sum(c for _, c in times) / len(times))


def measure_peak(variant: dict, size: Sequence[int], num_images: int,
                 warmup: int, device: str, threads: Optional[int],
                 cpu_malloc: str = 'default',
                 attention_weights: bool = False,
                 precision: str = 'fp32') -> dict:
    """Peak memory of one variant's CTTA iterations (call in a fresh process).

    Returns:
        dict: ``peak_kb`` (CPU: peak RSS minus the RSS after the imports; GPU: CUDA
        max allocated in KiB), and the raw ``rss_base_kb``, ``rss_peak_kb``.
    """
    if threads:
        torch.set_num_threads(threads)
    import mmseg_moase  # noqa: F401
    import mmseg.models  # noqa: F401
    base = proc_status_kb('VmRSS')
    bench = build_bench(Variant(**variant), tuple(size), num_images, device,
                        attention_weights=attention_weights,
                        cpu_malloc=cpu_malloc)
    for _ in range(warmup):
        run_pass(bench, device, precision)
    reset_peak_rss()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    run_pass(bench, device, precision)
    out = dict(rss_base_kb=base, rss_peak_kb=proc_status_kb('VmHWM'))
    if device.startswith('cuda'):
        out['peak_kb'] = torch.cuda.max_memory_allocated() // 1024
    else:
        out['peak_kb'] = out['rss_peak_kb'] - base
    return out


def child_peak(variant: Variant, args: argparse.Namespace) -> dict:
    """:func:`measure_peak` in a fresh child process."""
    env = dict(os.environ)
    if args.cpu_malloc == 'default':
        env.update(MALLOC_MMAP_THRESHOLD_=str(MALLOC_THRESHOLD),
                   MALLOC_TRIM_THRESHOLD_=str(MALLOC_THRESHOLD))
    return run_in_child(
        ROOT, 'tools.benchmark_ctta', 'measure_peak',
        [asdict(variant), list(args.size), args.images, max(args.warmup, 1),
         args.device, args.threads, args.cpu_malloc, args.attention_weights,
         args.precision],
        env=env)


def _verdict(value: Optional[float], target: Optional[float]) -> str:
    if target is None or value is None:
        return ''
    return f"<= {target:g}x {'met' if value <= target else 'NOT met'}"


def format_table(rows: Sequence[dict]) -> str:
    """The ratio table in Markdown."""
    lines = ['| Method | teacher views | s / image (min/med/max) | time ratio | '
             'CPU s / image (median) | CPU time ratio | peak memory MiB | '
             'memory ratio | time target | memory target |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        t = r['seconds_per_image']
        cpu = r['cpu_seconds_per_image']
        mem = r.get('peak_mib')
        mem_s = '-' if mem is None else f'{mem:.0f}'
        mem_r = '-' if mem is None else f"{r['memory_ratio']:.2f}x"
        target_t, target_m = TARGETS.get(r['label'], (None, None))
        lines.append(
            f"| {r['label']} | {r['views']} "
            f"| {t['min']:.3f}/{t['median']:.3f}/{t['max']:.3f} "
            f"| {r['time_ratio']:.2f}x "
            f"| {cpu['median']:.3f} | {r['cpu_time_ratio']:.2f}x "
            f'| {mem_s} | {mem_r} '
            f"| {_verdict(r['time_ratio'], target_t)} "
            f"| {_verdict(r.get('memory_ratio'), target_m)} |")
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', metavar='CONFIG',
                        help='CTTA configs, one of them a Source config '
                        '(default: the Cityscapes->ACDC configs of MiT-B0 on '
                        'CPU, MiT-B5 on GPU)')
    parser.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                        help='plain-view size (default 256 512 on CPU, 540 960 '
                        'on GPU)')
    parser.add_argument('--images', type=int, default=2,
                        help='fabricated images per pass')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1,
                        help='passes over the images before the timed repeats')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu')
    parser.add_argument('--threads', type=int,
                        help='torch intra-op threads (default: torch\'s)')
    parser.add_argument('--moase-teachers', nargs='+',
                        default=list(MOASE_TEACHERS), choices=list(MOASE_TEACHERS),
                        help='teacher modes measured for a MoASE config')
    parser.add_argument('--telemetry', action='store_true',
                        help='also measure every adapting method with the '
                        "loop's telemetry on (ctta_cfg.telemetry=True, the "
                        'default of tools/test_ctta.py), side by side')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the per-variant peak-memory processes')
    parser.add_argument('--cpu-malloc', choices=CPU_MALLOC_MODES,
                        default='keep',
                        help="CPU allocator: 'keep' freed memory for reuse, as "
                        "tools/test_ctta.py does on CPU (default), or glibc's "
                        "'default'")
    parser.add_argument('--attention-weights', action='store_true',
                        help="MiT attention as mmseg runs it (computing the "
                        "attention weights it discards); default: as "
                        "tools/test_ctta.py runs it, without them")
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help="'bf16': every step under bfloat16 autocast, as "
                        "ctta_cfg.precision='bf16' runs it (GPUs with bf16 "
                        "units; emulated and slow on most CPUs)")
    parser.add_argument('--out', default=osp.join('work_dirs',
                                                  'benchmark_ctta.json'))
    args = parser.parse_args(argv)
    kind = 'cuda' if args.device.startswith('cuda') else 'cpu'
    if not args.configs:
        args.configs = DEFAULT_CONFIGS['b5' if kind == 'cuda' else 'b0']
    if args.size is None:
        args.size = list(DEFAULT_SIZES[kind])
    for name in ('images', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = expand_variants(args.configs, args.moase_teachers,
                               args.telemetry)
    machine = machine_description(args.device)
    size = tuple(args.size)
    benches = [build_bench(v, size, args.images, args.device,
                           attention_weights=args.attention_weights,
                           cpu_malloc=args.cpu_malloc)
               for v in variants]
    times: Dict[str, List[float]] = {v.label: [] for v in variants}
    cpu_times: Dict[str, List[float]] = {v.label: [] for v in variants}
    for i in range(args.warmup + args.repeats):
        k = i % len(benches)
        order = benches[k:] + benches[:k]  # rotate: no variant always first
        for bench in order:
            t, c = run_pass(bench, args.device, args.precision)
            if i >= args.warmup:
                times[bench.variant.label].append(t)
                cpu_times[bench.variant.label].append(c)
        kind = 'warm-up' if i < args.warmup else 'repeat'
        print(f'{kind} {i + 1}/{args.warmup + args.repeats}: ' + ', '.join(
            f'{b.variant.label} {times[b.variant.label][-1]:.3f}s'
            if i >= args.warmup else b.variant.label for b in benches),
            flush=True)
    views = {b.variant.label: b.views for b in benches}
    del benches
    ref_time = statistics.median(times[REFERENCE])
    ref_cpu = statistics.median(cpu_times[REFERENCE])
    rows = []
    for v in variants:
        row = dict(label=v.label, config=osp.relpath(v.config, ROOT),
                   overrides=v.overrides, views=views[v.label],
                   seconds_per_image=min_median_max(times[v.label]),
                   time_ratio=statistics.median(times[v.label]) / ref_time,
                   cpu_seconds_per_image=min_median_max(cpu_times[v.label]),
                   cpu_time_ratio=statistics.median(cpu_times[v.label]) /
                   ref_cpu)
        if not args.no_memory:
            row['memory'] = child_peak(v, args)
            row['peak_mib'] = row['memory']['peak_kb'] / 1024
        rows.append(row)
    if not args.no_memory:
        ref = next(r for r in rows if r['label'] == REFERENCE)
        for r in rows:
            r['memory_ratio'] = r['peak_mib'] / ref['peak_mib']
    table = format_table(rows)
    memory_kind = ('CUDA max allocated' if args.device.startswith('cuda') else
                   'peak RSS above the imports')
    print(f'\nMachine: {machine}; device {args.device}; plain view '
          f'{size[0]}x{size[1]}; {args.images} images per pass, {args.repeats} '
          f'interleaved repeats after {args.warmup} warm-up; ratios to '
          f'{REFERENCE} (medians); memory: {memory_kind}; CPU allocator: '
          f'{args.cpu_malloc}; attention weights: '
          f"{'computed' if args.attention_weights else 'skipped'}; "
          f'precision: {args.precision}\n')
    print(table)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(machine=machine, device=args.device, size=list(size),
                       images=args.images, repeats=args.repeats,
                       warmup=args.warmup, memory=memory_kind,
                       cpu_malloc=args.cpu_malloc,
                       attention_weights=args.attention_weights,
                       precision=args.precision, rows=rows,
                       table=table), f, indent=2)
    print(f'\nwritten: {args.out}')


if __name__ == '__main__':
    main()
