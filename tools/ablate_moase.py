#!/usr/bin/env python
"""MoASE's ablations on the synthetic benchmark stream: one table, one plot.

    python tools/ablate_moase.py [--suite components experts options opd]
        [--seeds 0] [--jobs 2] [--protocol default]

Rows as in the MoASE paper's ablation tables: CoTTA -> + a dense
4-expert mixture -> + SDD -> + DAG -> + ASG -> + HP (= MoASE); the number of
experts E in {2, 4, 8, 16}; and single options (SDD ranking and scope, DAG
input, trainable parameters, teacher, the public code's expert selection);
on request (``--suite opd``) MoASE++ beside MoASE and MoASE++ at a fixed
augmentation strength (benchmark rows). Every other row is a config under
configs/synthetic/ablation/ inheriting the MoASE one (or the row before it)
with one option changed, so any row runs alone with tools/test_ctta.py. The
runs go to the benchmark's work dir (CoTTA and MoASE are the benchmark's own
runs, reused when done); the table is ablation.md / ablation.json there, the
plot ablation.png.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tools.bench_utils import default_jobs  # noqa: E402
from tools.synthetic_benchmark import (  # noqa: E402
    CONFIG_DIR, PROTOCOLS, run_synthetic_benchmark, source_model_dir)

SUFFIX = 'mit-b0_3rounds_synthetic-city2weather-128x256.py'
#: (row name, what the row adds or changes, config or None for a benchmark
#: method), per suite, in table order.
SUITES: Dict[str, List[Tuple[str, str, str]]] = {
    'components': [
        ('CoTTA', 'CoTTA (no adapter)', None),
        ('MoASE-dense-moe', '+ 4 dense experts, softmax router on h',
         'moase-dense-moe'),
        ('MoASE-no-hp-no-asg-no-dag', '+ SDD', 'moase-no-hp-no-asg-no-dag'),
        ('MoASE-no-hp-no-asg', '+ DAG (router reads the weakest half)',
         'moase-no-hp-no-asg'),
        ('MoASE-no-hp', '+ ASG (eta 0.1)', 'moase-no-hp'),
        ('MoASE', '+ HP loss (= MoASE)', None),
    ],
    'experts': [
        ('MoASE-e2', 'E = 2', 'moase-e2'),
        ('MoASE', 'E = 4 (MoASE)', None),
        ('MoASE-e8', 'E = 8', 'moase-e8'),
        ('MoASE-e16', 'E = 16', 'moase-e16'),
    ],
    'options': [
        ('MoASE-sdd-ranking-all', "sdd_ranking='all' (public code)",
         'moase-sdd-ranking-all'),
        ('MoASE-sdd-ranking-released',
         "sdd_ranking='released' (public code as run: all experts smallest)",
         'moase-sdd-ranking-released'),
        ('MoASE-sdd-scope-sample', "sdd_scope='sample' (paper Eq. 2)",
         'moase-sdd-scope-sample'),
        ('MoASE-dag-input-high', "dag_input='high' (public code)",
         'moase-dag-input-high'),
        ('MoASE-trainable-adapters', "trainable='adapters'",
         'moase-trainable-adapters'),
        ('MoASE-trainable-adapters-norm', "trainable='adapters+norm'",
         'moase-trainable-adapters-norm'),
        ('MoASE-teacher-single', "teacher='single' (public code)",
         'moase-teacher-single'),
    ],
    # MoASE++ (on request: --suite opd): the benchmark's MoASE++ row and its
    # policy ablated to a fixed strength.
    'opd': [
        ('MoASE', 'MoASE', None),
        ('MoASE++', '+ on-policy distillation, learned augmentation (MoASE++)',
         None),
        ('MoASE++-fixed-strength', 'MoASE++ at a fixed strength 0.5 (no policy)',
         None),
    ],
}
#: The suites run without ``--suite``.
DEFAULT_SUITES = ('components', 'experts', 'options')


def row_configs(suites: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """Row names in table order (no repeats) and the ablation rows' configs."""
    names: List[str] = []
    configs: Dict[str, str] = {}
    for suite in suites:
        for name, _, stem in SUITES[suite]:
            if name not in names:
                names.append(name)
            if stem is not None:
                configs[name] = osp.join(CONFIG_DIR, 'ablation',
                                         f'{stem}_{SUFFIX}')
    return names, configs


def ablation_table(payload: Dict, suites: Sequence[str]) -> str:
    """Markdown: per suite, each row's mean mIoU, its change against the row
    before and against MoASE, the student's mIoU and the experts' telemetry."""
    methods = payload['methods']
    ref = methods.get('MoASE', {}).get('mean_mIoU')
    out = []
    for suite in suites:
        out += [f'### {suite}', '',
                '| Row | Mean mIoU | Δ row above | Δ MoASE | student mIoU | '
                'experts ‖θ‖ (student) | dead share (mean over experts) |',
                '|---|---|---|---|---|---|---|']
        prev = None
        for name, label, _ in SUITES[suite]:
            t = methods[name]
            m = t['mean_mIoU']
            spread = f" ± {t['mean_mIoU_std']:.2f}" if t['seeds'] > 1 else ''
            tel = t.get('telemetry') or {}
            dead = [v for k, v in tel.items()
                    if k.startswith('run_mean.') and k.endswith('.dead_share')]
            cells = [
                label, f'{m:.2f}{spread}',
                '-' if prev is None else f'{m - prev:+.2f}',
                '-' if ref is None else f'{m - ref:+.2f}',
                '-' if t.get('student_mean_mIoU') is None
                else f"{t['student_mean_mIoU']:.2f}",
                '-' if tel.get('drift.student.experts_abs') is None
                else f"{tel['drift.student.experts_abs']:.3g}",
                f'{statistics.mean(dead):.2f}' if dead else '-']
            out.append('| ' + ' | '.join(cells) + ' |')
            prev = m
        out.append('')
    return '\n'.join(out)


def plot_ablation(payload: Dict, suites: Sequence[str], path: str) -> None:
    """Horizontal bars of every row's mean mIoU, one panel per suite, with
    CoTTA's and MoASE's means as lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    methods = payload['methods']
    fig, axes = plt.subplots(len(suites), 1, squeeze=False,
                             figsize=(8, 1.2 + 0.45 * sum(
                                 len(SUITES[s]) for s in suites)))
    values = [t['mean_mIoU'] for t in methods.values()]
    lo, hi = min(values), max(values)
    pad = max(0.05, (hi - lo) * 0.3)
    for ax, suite in zip(axes[:, 0], suites):
        rows = SUITES[suite]
        y = list(range(len(rows)))[::-1]
        means = [methods[n]['mean_mIoU'] for n, _, _ in rows]
        errs = [methods[n]['mean_mIoU_std'] for n, _, _ in rows]
        ax.barh(y, means, xerr=errs, color='tab:blue', alpha=0.7)
        ax.set_yticks(y, [label for _, label, _ in rows], fontsize=8)
        for ref, color in (('CoTTA', 'tab:red'), ('MoASE', 'tab:green')):
            if ref in methods:
                ax.axvline(methods[ref]['mean_mIoU'], color=color, ls='--',
                           lw=1, label=f'{ref} {methods[ref]["mean_mIoU"]:.2f}')
        for yi, m in zip(y, means):
            ax.text(m, yi, f' {m:.2f}', va='center', fontsize=7)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_title(suite, fontsize=9)
        ax.legend(fontsize=7, loc='lower right')
    axes[-1, 0].set_xlabel('mean mIoU over all passes (synthetic stream)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--suite', nargs='+', choices=list(SUITES),
                   default=list(DEFAULT_SUITES),
                   help='which ablation tables to run (opd: MoASE++)')
    p.add_argument('--protocol', choices=list(PROTOCOLS), default='default')
    p.add_argument('--work-dir', help="default: the protocol's benchmark dir")
    p.add_argument('--data-root', help="default: the protocol's")
    p.add_argument('--seeds', nargs='+', type=int, default=[0])
    p.add_argument('--jobs', type=int, default=default_jobs())
    p.add_argument('--rounds', type=int, help='override the number of rounds')
    args = p.parse_args(argv)
    proto = PROTOCOLS[args.protocol]
    work = args.work_dir or proto['work_root']
    source_dir = source_model_dir(args.work_dir)
    names, configs = row_configs(args.suite)
    payload = run_synthetic_benchmark(
        work, args.data_root or proto['data_root'], names, args.seeds,
        dict(num_target=proto['num_target']), rounds=args.rounds,
        jobs=args.jobs, source_dir=source_dir, configs=configs,
        out_name='ablation_runs')
    md = ablation_table(payload, args.suite)
    with open(osp.join(work, 'ablation.md'), 'w') as f:
        f.write('# MoASE ablations (synthetic benchmark)\n\n' + md)
    with open(osp.join(work, 'ablation.json'), 'w') as f:
        json.dump(dict(suites={s: [n for n, _, _ in SUITES[s]]
                               for s in args.suite}, **payload), f, indent=2)
    plot_ablation(payload, args.suite, osp.join(work, 'ablation.png'))
    print(md)
    for name in ('ablation.md', 'ablation.json', 'ablation.png'):
        print(f'[ablation] {osp.abspath(osp.join(work, name))}')


if __name__ == '__main__':
    main()
