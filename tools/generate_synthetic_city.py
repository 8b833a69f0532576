"""Generate the synthetic city -> adverse weather benchmark.

    python tools/generate_synthetic_city.py OUT_DIR [--seed N] [--size H W]
        [--num-train N] [--num-val N] [--num-target N]
        [--severity calibrated|legacy|S|COND=S ...]
        [--force] [--preview PNG] [--quiet]

Writes a clear-weather source set in Cityscapes layout (``leftImg8bit``,
``gtFine``) and fog/night/rain/snow target sets in ACDC layout (``rgb_anon``,
``gt``) plus ``meta.json``. Re-running with the same arguments is a no-op;
a folder holding anything else is only replaced with ``--force``.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_moase.datasets.synthetic_city import (  # noqa: E402
    CLASS_SETS, generate_synthetic_city, render_preview)
from mmseg_moase.datasets.synthetic_city.calibration import (  # noqa: E402
    DEFAULT_PRESET, PRESETS)


def parse_severity(tokens):
    """``--severity`` tokens -> what :func:`generate_synthetic_city` takes: a
    preset name, one number, or ``COND=S`` pairs (the others keep the default
    preset's values)."""
    if not tokens:
        return None
    if len(tokens) == 1 and '=' not in tokens[0]:
        if tokens[0] in PRESETS:
            return tokens[0]
        try:
            return float(tokens[0])
        except ValueError:
            raise ValueError(f'--severity {tokens[0]!r}: expected a preset '
                             f'({", ".join(sorted(PRESETS))}), a number in '
                             '[0, 1] or COND=S pairs') from None
    out = {}
    for tok in tokens:
        cond, sep, value = tok.partition('=')
        try:
            out[cond] = float(value) if sep else float('nan')
        except ValueError:
            out[cond] = value
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate synthetic Cityscapes-like source and ACDC-like '
        'fog/night/rain/snow target data sets')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 256),
                        metavar=('H', 'W'), help='image height and width')
    parser.add_argument('--num-train', type=int, default=1200,
                        help='clear-weather training images')
    parser.add_argument('--num-val', type=int, default=50,
                        help='clear-weather validation images')
    parser.add_argument('--num-target', type=int, default=64,
                        help='images per adverse condition')
    parser.add_argument('--severity', nargs='+', metavar='S',
                        help='strength of the adverse conditions in [0, 1]: a '
                        f'preset ({", ".join(sorted(PRESETS))}; default '
                        f'{DEFAULT_PRESET}: {PRESETS[DEFAULT_PRESET]}; legacy: '
                        '0.7 everywhere, the data of the tables before '
                        'generator 2.2.0), one number for all, or COND=S '
                        'pairs, e.g. fog=0.3 night=0.6')
    parser.add_argument('--class-set', choices=CLASS_SETS,
                        default='benchmark',
                        help="'benchmark': 12 classes (default); 'extended': "
                        "also walls and trucks (14); 'full': also traffic "
                        'lights, riders, bicycles and motorcycles (18)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing, different data set in OUT_DIR')
    parser.add_argument('--preview', metavar='PNG',
                        help='also save one scene in all conditions + its label')
    parser.add_argument('--quiet', action='store_true', help='no progress output')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    try:
        severity = parse_severity(args.severity)
        info = generate_synthetic_city(
            args.out_dir, seed=args.seed, size=tuple(args.size),
            num_source_train=args.num_train, num_source_val=args.num_val,
            num_target=args.num_target, severity=severity,
            class_set=args.class_set, force=args.force, progress=not args.quiet)
    except (FileExistsError, ValueError) as e:
        sys.exit(f'error: {e}')
    if args.preview:
        from PIL import Image
        from mmseg.datasets import CityscapesDataset
        grid = render_preview(CityscapesDataset.METAINFO['palette'],
                              seed=args.seed, size=tuple(args.size),
                              severity=severity, class_set=args.class_set)
        Image.fromarray(grid).save(args.preview)
    if not args.quiet:
        what = (f'wrote {info["written"]} images' if info['written'] else
                'already complete, nothing to do')
        print(f'{args.out_dir}: {what} in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
