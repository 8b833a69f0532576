"""Cost of MoASE adapters: parameters, forward time and peak memory vs stock MiT.

For each backbone (MiT-B0, MiT-B5 by default) the stock SegFormer and the same
model with MoASE adapters in every block run the same input, interleaved over
several repeats after a warm-up, in one invocation. Peak memory is measured in a
fresh child process per variant: on CPU the peak RSS during one forward (the peak
counter is reset after the model is built), on GPU CUDA max-allocated. Results are printed as a table and written as JSON.

    python tools/benchmark_adapter.py [--backbones b0 b5] [--size 540 960]
        [--repeats 5] [--device cpu] [--out work_dirs/benchmark_adapter.json]
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.bench_utils import (machine_description,  # noqa: E402
                               min_median_max, proc_status_kb, reset_peak_rss,
                               run_in_child)

CONFIGS = dict(
    b0=osp.join(ROOT, 'configs/_base_/models/segformer_mit-b0_moase.py'),
    b5=osp.join(ROOT, 'configs/_base_/models/segformer_mit-b5_moase.py'))


def build(backbone: str, adapters: bool, device: str):
    import mmseg_moase  # noqa: F401
    from mmengine.config import Config
    from mmseg.registry import MODELS
    cfg = Config.fromfile(CONFIGS[backbone])
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    if not adapters:
        model_cfg.backbone.type = 'MixVisionTransformer'
        for k in ('moase_cfg', 'moase_stages', 'moase_bottlenecks'):
            model_cfg.backbone.pop(k)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.to(device).eval()


def measure_peak(backbone: str, adapters: bool, size, device: str) -> dict:
    """Peak memory of one forward (run in a fresh child process).

    CPU: the peak RSS (VmHWM) is reset just before the forward (Linux
    ``/proc/self/clear_refs``), so it is the peak of the forward alone on top of the
    resident model, not of imports or model building. CUDA: max allocated.
    """
    model = build(backbone, adapters, device)
    x = torch.randn(1, 3, *size, device=device)
    reset_peak_rss()
    base = proc_status_kb('VmRSS')
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model._forward(x)
    cuda = torch.cuda.max_memory_allocated() if device == 'cuda' else 0
    return dict(rss_before_kb=base, rss_peak_kb=proc_status_kb('VmHWM'),
                cuda_peak_bytes=cuda)


def child_peak(backbone: str, adapters: bool, size, device: str) -> dict:
    """:func:`measure_peak` in a fresh process (no allocator state carried over)."""
    return run_in_child(ROOT, 'tools.benchmark_adapter', 'measure_peak',
                        [backbone, adapters, list(size), device])


def time_forward(model, x, device) -> float:
    if device == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model._forward(x)
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backbones', nargs='+', default=['b0', 'b5'],
                        choices=sorted(CONFIGS))
    parser.add_argument('--size', nargs=2, type=int, default=[540, 960],
                        metavar=('H', 'W'))
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu')
    parser.add_argument('--out', default=osp.join('work_dirs',
                                                  'benchmark_adapter.json'))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    machine = machine_description(args.device)
    rows = []
    for bb in args.backbones:
        stock, ours = build(bb, False, args.device), build(bb, True, args.device)
        counts = ours.backbone.adapter_parameter_count()
        x = torch.randn(1, 3, *args.size, device=args.device)
        times = dict(stock=[], moase=[])
        for i in range(args.warmup + args.repeats):
            for name, model in (('stock', stock), ('moase', ours)):
                t = time_forward(model, x, args.device)
                if i >= args.warmup:
                    times[name].append(t)
            print(f'[{bb}] repeat {i + 1}/{args.warmup + args.repeats}: '
                  f'stock {times["stock"][-1] if times["stock"] else t:.3f}s',
                  flush=True)
        del stock, ours
        mem = dict(stock=child_peak(bb, False, args.size, args.device),
                   moase=child_peak(bb, True, args.size, args.device))
        key = 'cuda_peak_bytes' if args.device == 'cuda' else 'rss_peak_kb'
        for m in mem.values():
            m['forward_extra_kb'] = m['rss_peak_kb'] - m['rss_before_kb']
        row = dict(
            backbone=f'MiT-{bb.upper()}',
            size=list(args.size),
            adapter_params=counts['adapters'],
            backbone_params=counts['backbone'],
            adapter_param_pct=100.0 * counts['adapters'] / counts['backbone'],
            time_s={k: min_median_max(v) for k, v in times.items()},
            time_ratio=statistics.median(times['moase']) /
            statistics.median(times['stock']),
            memory=mem,
            memory_ratio=mem['moase'][key] / mem['stock'][key],
            forward_memory_ratio=mem['moase']['forward_extra_kb'] /
            max(mem['stock']['forward_extra_kb'], 1))
        rows.append(row)
    print(f'\nMachine: {machine}; input {args.size[0]}x{args.size[1]}, '
          f'{args.repeats} interleaved repeats after {args.warmup} warm-up')
    print('| Backbone | adapter params (% of backbone) | forward stock s (min/med/max)'
          ' | forward MoASE s (min/med/max) | time ratio | peak memory ratio '
          '(model + forward) | forward-only memory ratio |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        ts, tm = r['time_s']['stock'], r['time_s']['moase']
        print(f"| {r['backbone']} | {r['adapter_params']:,} ({r['adapter_param_pct']:.2f}%)"
              f" | {ts['min']:.3f}/{ts['median']:.3f}/{ts['max']:.3f}"
              f" | {tm['min']:.3f}/{tm['median']:.3f}/{tm['max']:.3f}"
              f" | {r['time_ratio']:.3f}x | {r['memory_ratio']:.3f}x"
              f" | {r['forward_memory_ratio']:.3f}x |")
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(machine=machine, device=args.device, rows=rows), f, indent=2)
    print(f'\nwritten: {args.out}')


if __name__ == '__main__':
    main()
