"""The main job: the synthetic city -> weather CTTA benchmark, end to end.

    python tools/run_synthetic_benchmark.py [--seeds 0 1 2] [--methods ...]
        [--protocol default|long] [--jobs N]
        [--work-dir DIR] [--data-root DIR]

Generates the data and trains the source model when missing (both reused after),
runs Source, NormStat, TENT, CoTTA and MoASE (and any named variant, e.g.
``MoASE-active``, and on request ``Oracle``: the source model fine-tuned on
labelled scenes the stream does not show, the headroom of adaptation) over 3
rounds of Fog -> Night -> Rain -> Snow, and writes
comparison.{md,json}, miou_stream.png and every run's ctta_results.* and
ctta_telemetry.png under the work dir. ``--protocol long`` uses ACDC's 400 images
per condition (its own data and work folders, the same source model).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tools.bench_utils import default_jobs  # noqa: E402
from tools.synthetic_benchmark import (  # noqa: E402
    CONDITIONS, DEFAULT_METHODS, METHOD_CONFIGS, ORACLE, PROTOCOLS, VARIANTS,
    run_synthetic_benchmark, source_model_dir)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--protocol', choices=list(PROTOCOLS), default='default',
                   help='stream length: default = 64 images per condition '
                   '(768 steps), long = 400 (4800 steps)')
    p.add_argument('--work-dir', help='default: the protocol\'s '
                   '(work_dirs/synthetic_benchmark[_long])')
    p.add_argument('--data-root', help='default: the protocol\'s '
                   '(data/synthetic_city[_long])')
    p.add_argument('--conditions', choices=list(CONDITIONS),
                   default='calibrated',
                   help="'calibrated' (default): per-condition severities "
                   'and a source model trained with PhotoMetricDistortion; '
                   "'legacy': the conditions and source recipe of the tables "
                   'before them (severity 0.7, no photometric augmentation), '
                   'in their own folders (data/synthetic_city_legacy, '
                   'work_dirs/synthetic_benchmark_legacy)')
    p.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS),
                   choices=list(METHOD_CONFIGS) + list(VARIANTS) + [ORACLE],
                   help='methods and named variants to run; Oracle (not by '
                   'default): the source model fine-tuned on labelled scenes '
                   'of each condition that the stream does not show, the '
                   'upper bound')
    p.add_argument('--seeds', nargs='+', type=int, default=[0],
                   help='seeds for the adapting methods (Source, Oracle and '
                   'the named variants run the first only)')
    p.add_argument('--jobs', type=int, default=default_jobs(),
                   help='method runs side by side, each with cores/jobs '
                   'threads (default: 2 where there are 2 cores; output then '
                   'goes to each run\'s run.log); 1 runs them one by one')
    p.add_argument('--train-iters', type=int, help='override source training')
    p.add_argument('--warmup-iters', type=int,
                   help="override the length of ViDA's adapter warm-up")
    p.add_argument('--oracle-iters', type=int,
                   help="override the length of the Oracle's fine-tuning")
    p.add_argument('--rounds', type=int, help='override the number of rounds')
    p.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                   help='generated image size (default 128 256)')
    p.add_argument('--num-train', type=int, help='source training images')
    p.add_argument('--num-val', type=int, help='source val images')
    p.add_argument('--num-target', type=int,
                   help='images per condition (default: the protocol\'s)')
    args = p.parse_args(argv)
    proto = PROTOCOLS[args.protocol]
    cond = CONDITIONS[args.conditions]
    gen = dict(num_target=proto['num_target'], severity=cond['severity'])
    if args.size:
        gen['size'] = tuple(args.size)
    for key, name in (('num_train', 'num_source_train'),
                      ('num_val', 'num_source_val'), ('num_target', 'num_target')):
        if getattr(args, key) is not None:
            gen[name] = getattr(args, key)
    work = args.work_dir or proto['work_root'] + cond['suffix']
    # Same source data, same recipe: the protocols share the default's model.
    source_dir = source_model_dir(args.work_dir, args.conditions)
    run_synthetic_benchmark(work,
                            args.data_root or proto['data_root'] + cond['suffix'],
                            args.methods, args.seeds, gen, args.train_iters,
                            rounds=args.rounds, jobs=args.jobs,
                            source_dir=source_dir,
                            warmup_iters=args.warmup_iters,
                            oracle=dict(max_iters=args.oracle_iters),
                            source_config=cond['source_config'])


if __name__ == '__main__':
    main()
