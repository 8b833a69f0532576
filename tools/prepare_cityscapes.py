"""Report and create the Cityscapes train-id labels mmseg reads.

    python tools/prepare_cityscapes.py DATA_ROOT [--split SPLIT] [--check]

``DATA_ROOT`` is the Cityscapes root, holding ``leftImg8bit/<split>/<city>/*.png``
(from ``leftImg8bit_trainvaltest.zip``) and ``gtFine/<split>/<city>/`` (from
``gtFine_trainvaltest.zip``). mmseg's ``CityscapesDataset`` (and a Cityscapes
domain of a CTTA stream) needs ``gtFine/.../*_gtFine_labelTrainIds.png`` for every
image; the download does not contain them. This tool

1. lists the images whose ``*_gtFine_labelTrainIds.png`` is missing (per split);
2. if any is missing, runs cityscapesscripts' ``csCreateTrainIdLabelImgs`` on
   ``DATA_ROOT`` (with ``CITYSCAPES_DATASET=DATA_ROOT`` for that call), which draws
   them from the ``*_gtFine_polygons.json`` annotations (all splits; existing
   label files are rewritten, identically);
3. checks again and exits with status 1 if labels are still missing (an image
   without a polygon file), 0 otherwise.

Options:
    --split SPLIT  Only report (and check) this split (``train``, ``val``, ...);
        the converter itself always converts every split.
    --check        Only report; create nothing (exit status 1 if any is missing).
    --force        Run the converter even when nothing is missing.

The same as ``CITYSCAPES_DATASET=DATA_ROOT csCreateTrainIdLabelImgs``, plus the
report and a clear error when the polygon files are absent.
"""
import argparse
import os.path as osp
import sys
from collections import Counter
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_moase.datasets.cityscapes_prep import (  # noqa: E402
    IMG_DIR, create_train_id_labels, find_missing_train_id_labels)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Report missing Cityscapes *_gtFine_labelTrainIds.png files '
        'and create them with cityscapesscripts (csCreateTrainIdLabelImgs).')
    parser.add_argument('data_root', help='Cityscapes root (leftImg8bit, gtFine)')
    parser.add_argument('--split', help='only this split (train, val, ...)')
    parser.add_argument('--check', action='store_true',
                        help='only report, create nothing')
    parser.add_argument('--force', action='store_true',
                        help='run the converter even if nothing is missing')
    return parser.parse_args(argv)


def _report(data_root: str, split: Optional[str]) -> List[str]:
    missing = find_missing_train_id_labels(data_root, split)
    gt_root = osp.join(data_root, 'gtFine')
    per_split = Counter(osp.relpath(m, gt_root).split(osp.sep)[0]
                        for m in missing)
    where = f'split {split}' if split else 'all splits'
    if not missing:
        print(f'{data_root} ({where}): every image has its '
              '*_gtFine_labelTrainIds.png')
    else:
        counts = ', '.join(f'{s}: {n}' for s, n in sorted(per_split.items()))
        print(f'{data_root} ({where}): {len(missing)} *_gtFine_labelTrainIds.png '
              f'missing ({counts}); first: {missing[0]}')
    return missing


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    root = args.data_root
    if not osp.isdir(osp.join(root, IMG_DIR)):
        print(f'error: {osp.join(root, IMG_DIR)} does not exist; DATA_ROOT must be '
              'the Cityscapes root (holding leftImg8bit and gtFine).',
              file=sys.stderr)
        return 2
    try:
        missing = _report(root, args.split)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.check or not (missing or args.force):
        return 1 if missing else 0
    print('running csCreateTrainIdLabelImgs (CITYSCAPES_DATASET='
          f'{osp.abspath(root)}) ...')
    try:
        written = create_train_id_labels(root)
    except (FileNotFoundError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'wrote {len(written)} *_labelTrainIds.png files')
    return 1 if _report(root, args.split) else 0


if __name__ == '__main__':
    sys.exit(main())
