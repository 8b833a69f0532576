"""The main job: the synthetic city -> weather CTTA benchmark, end to end.

    python tools/run_synthetic_benchmark.py [--seeds 0 1 2] [--methods ...]
        [--work-dir work_dirs/synthetic_benchmark] [--data-root data/synthetic_city]

Generates the data and trains the source model when missing (both reused after),
runs Source, NormStat, TENT, CoTTA and MoASE over 3 rounds of Fog -> Night -> Rain
-> Snow, and writes comparison.{md,json}, miou_stream.png and every run's
ctta_results.* under the work dir.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_moase.apis.synthetic_benchmark import (  # noqa: E402
    METHOD_CONFIGS, run_synthetic_benchmark)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/synthetic_benchmark')
    p.add_argument('--data-root', default='data/synthetic_city')
    p.add_argument('--methods', nargs='+', default=list(METHOD_CONFIGS),
                   choices=list(METHOD_CONFIGS))
    p.add_argument('--seeds', nargs='+', type=int, default=[0],
                   help='seeds for the adapting methods (all but Source)')
    p.add_argument('--train-iters', type=int, help='override source training')
    p.add_argument('--rounds', type=int, help='override the number of rounds')
    p.add_argument('--size', nargs=2, type=int, metavar=('H', 'W'),
                   help='generated image size (default 128 256)')
    p.add_argument('--num-train', type=int, help='source training images')
    p.add_argument('--num-val', type=int, help='source val images')
    p.add_argument('--num-target', type=int, help='images per condition (16)')
    args = p.parse_args(argv)
    gen = {}
    if args.size:
        gen['size'] = tuple(args.size)
    for key, name in (('num_train', 'num_source_train'),
                      ('num_val', 'num_source_val'), ('num_target', 'num_target')):
        if getattr(args, key) is not None:
            gen[name] = getattr(args, key)
    run_synthetic_benchmark(args.work_dir, args.data_root, args.methods,
                            args.seeds, gen, args.train_iters, rounds=args.rounds)


if __name__ == '__main__':
    main()
