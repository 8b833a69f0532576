#!/usr/bin/env python
"""Warm up ViDA's adapters on the source data with the source model frozen.

    python tools/warmup_vida.py CONFIG SOURCE_CHECKPOINT [--work-dir DIR]
        [--iters N] [--cfg-options KEY=VALUE ...]

CONFIG is a warm-up training config (e.g. configs/vida/vida-warmup_mit-b5_
cityscapes-1024x1024.py or configs/synthetic/vida-warmup_mit-b0_synthetic-
source_128x256.py); SOURCE_CHECKPOINT the source model (mmseg 1.x, or the NVlabs
SegFormer file, converted in memory). The last checkpoint of the run is the
CHECKPOINT for tools/test_ctta.py with a ViDA config.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401  (registers models, hooks)
from mmseg_moase.apis.warmup import prepare_warmup_config, run_warmup  # noqa


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='warm-up training config')
    p.add_argument('checkpoint', help='source checkpoint')
    p.add_argument('--work-dir', help='default: work_dirs/<config name>')
    p.add_argument('--iters', type=int, help='override the training length')
    p.add_argument('--no-validate', action='store_true',
                   help='skip scoring the source val set after training')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value pairs')
    args = p.parse_args(argv)
    try:
        cfg = prepare_warmup_config(args.config, args.checkpoint, args.work_dir,
                                    args.iters, args.cfg_options)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    out = run_warmup(cfg, validate=not args.no_validate)
    with open(osp.join(cfg.work_dir, 'warmup.json'), 'w') as f:
        json.dump(dict(out, source_checkpoint=args.checkpoint), f, indent=2)
    print(f'warm-up checkpoint: {out["checkpoint"]}')


if __name__ == '__main__':
    main()
