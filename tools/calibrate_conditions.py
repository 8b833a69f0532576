"""Retention of a source model under each synthetic condition, per severity.

    python tools/calibrate_conditions.py CHECKPOINT [--config CFG]
        [--severity fog=0.3 night=0.6 ...] [--grid fog=0.2,0.3,0.4 ...]
        [--seed 0] [--num-target 64] [--num-val 50] [--class-set benchmark]
        [--out work_dirs/calibration.json]

Renders the stream's scenes (the generator's own RNG streams, in memory: the
images the stream would hold at that severity) and scores the source model on
them as Source (running statistics) and NormStat (batch-1 test statistics), with
mmseg's ``IoUMetric`` maths over each condition, and on the clean val set. A
condition's **retention** is its Source mIoU over the clean val mIoU of the same
model. This is the measurement the benchmark's per-condition severities were
chosen with (see ``mmseg_moase/datasets/synthetic_city/calibration.py``); it looks
at Source and NormStat only, never at an adapting method.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_CONFIG = osp.join(
    ROOT, 'configs', 'synthetic',
    'source_mit-b0_3rounds_synthetic-city2weather-128x256.py')


def parse_pairs(items: Sequence[str], option: str) -> Dict[str, List[float]]:
    """``['fog=0.2,0.3', 'night=0.5']`` -> ``{'fog': [0.2, 0.3], ...}``."""
    from mmseg_moase.datasets.synthetic_city import CONDITIONS
    out: Dict[str, List[float]] = {}
    for item in items or ():
        name, _, values = item.partition('=')
        if name not in CONDITIONS or not values:
            raise SystemExit(f'error: {option} {item!r}: expected COND=VALUE[,'
                             f'VALUE...] with COND one of {CONDITIONS}')
        try:
            out[name] = [float(v) for v in values.split(',')]
        except ValueError:
            raise SystemExit(f'error: {option} {item!r}: not numbers') from None
    return out


def build_model(config: str, checkpoint: str) -> torch.nn.Module:
    """The source model of a CTTA config with the checkpoint's weights."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmseg_moase  # noqa: F401  (registers the model parts)
    from mmseg_moase.models.checkpoints.loading import load_source_checkpoint
    init_default_scope('mmseg')
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    load_source_checkpoint(model, checkpoint)
    return model.eval()


class Scorer:
    """Source and NormStat mIoU of one model over lists of (image, label)."""

    def __init__(self, model: torch.nn.Module, num_classes: int = 19) -> None:
        import copy

        from mmseg.evaluation import IoUMetric
        from mmseg_moase.methods.base import use_test_batch_stats
        self.model = model
        # NormStat's own copy: a BatchNorm in training mode also moves its
        # running statistics, which Source must not see.
        self.norm_stat = copy.deepcopy(model)
        use_test_batch_stats(self.norm_stat)
        self.num_classes = num_classes
        self._iou = IoUMetric.intersect_and_union
        self._metrics = IoUMetric.total_area_to_metrics

    @torch.no_grad()
    def predict(self, img: np.ndarray, test_stats: bool) -> torch.Tensor:
        from mmseg.structures import SegDataSample
        model = self.norm_stat if test_stats else self.model
        h, w = img.shape[:2]
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             pad_shape=(h, w)))
        # LoadImageFromFile gives BGR; the data preprocessor turns it to RGB.
        t = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1)
        data = model.data_preprocessor(
            dict(inputs=[t], data_samples=[sample]), False)
        logits = model.encode_decode(data['inputs'], [sample.metainfo])
        return logits.argmax(1)[0]

    def miou(self, items: Sequence[Tuple[np.ndarray, np.ndarray]],
             test_stats: bool) -> float:
        areas = None
        for img, label in items:
            pred = self.predict(img, test_stats)
            a = self._iou(pred, torch.from_numpy(label.astype(np.int64)),
                          self.num_classes, 255)
            areas = a if areas is None else tuple(x + y for x, y in zip(areas, a))
        ret = self._metrics(*areas, ['mIoU'])
        return float(np.nanmean(ret['IoU']) * 100)


def render(seed: int, stream: str, num: int, severity: float,
           class_set: str) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The stream's first ``num`` images at ``severity`` (in memory)."""
    from mmseg_moase.datasets.synthetic_city import render_item
    return [render_item(seed, stream, i, (128, 256), severity, class_set)
            for i in range(num)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('checkpoint', help='source model (.pth)')
    p.add_argument('--config', default=DEFAULT_CONFIG,
                   help='a CTTA config whose `model` is the source model '
                   '(default: the synthetic Source config)')
    p.add_argument('--severity', nargs='+', metavar='COND=S',
                   help='one severity per condition (default: the generator\'s)')
    p.add_argument('--grid', nargs='+', metavar='COND=S1,S2',
                   help='several severities of a condition, each scored')
    p.add_argument('--seed', type=int, default=0, help='generator seed')
    p.add_argument('--num-target', type=int, default=64)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--class-set', default='benchmark')
    p.add_argument('--threads', type=int, help='torch threads')
    p.add_argument('--out', default=osp.join('work_dirs', 'calibration.json'))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmseg_moase.datasets.synthetic_city import CONDITIONS
    from mmseg_moase.datasets.synthetic_city.calibration import \
        condition_severities
    grid = {c: [s] for c, s in condition_severities().items()}
    grid.update(parse_pairs(args.severity, '--severity'))
    grid.update(parse_pairs(args.grid, '--grid'))
    scorer = Scorer(build_model(args.config, args.checkpoint))
    t0 = time.time()
    val = render(args.seed, 'val', args.num_val, 0.0, args.class_set)
    clean = scorer.miou(val, False)
    clean_ns = scorer.miou(val, True)
    rows = []
    print(f'clean val: Source {clean:.2f}, NormStat {clean_ns:.2f} '
          f'({args.num_val} images)')
    print('| condition | severity | Source | retention | NormStat | '
          'NormStat - Source |')
    print('|---|---|---|---|---|---|')
    for cond in CONDITIONS:
        for sev in grid[cond]:
            items = render(args.seed, cond, args.num_target, sev,
                           args.class_set)
            src = scorer.miou(items, False)
            ns = scorer.miou(items, True)
            rows.append(dict(condition=cond, severity=sev, source=src,
                             retention=src / clean, norm_stat=ns))
            print(f'| {cond} | {sev:g} | {src:.2f} | {src / clean:.2f} | '
                  f'{ns:.2f} | {ns - src:+.2f} |', flush=True)
    print(f'({time.time() - t0:.0f} s)')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(checkpoint=args.checkpoint, config=args.config,
                       seed=args.seed, num_target=args.num_target,
                       clean_val=clean, clean_val_norm_stat=clean_ns,
                       rows=rows), f, indent=2)
    print(f'written: {args.out}')


if __name__ == '__main__':
    main()
