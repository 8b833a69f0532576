"""Fabricated datasets in the real on-disk layouts, for tests."""
import os
import os.path as osp
from typing import Sequence

import numpy as np
from PIL import Image


def write_cityscapes_tree(root: str, split: str = 'val', city: str = 'testcity',
                          num: int = 2, size=(32, 64), seed: int = 0,
                          classes: Sequence[int] = tuple(range(19))) -> None:
    """A Cityscapes-layout set: leftImg8bit + gtFine *_labelTrainIds.png."""
    rng = np.random.default_rng(seed)
    img_dir = osp.join(root, 'leftImg8bit', split, city)
    ann_dir = osp.join(root, 'gtFine', split, city)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    h, w = size
    for i in range(num):
        stem = f'{city}_{i:06d}_000019'
        label = rng.choice(np.asarray(classes, np.uint8), size=(h // 8, w // 8))
        label = np.kron(label, np.ones((8, 8), np.uint8))
        img = (rng.random((h, w, 3)) * 60 + label[..., None] * 10).astype(np.uint8)
        Image.fromarray(img).save(osp.join(img_dir, f'{stem}_leftImg8bit.png'))
        Image.fromarray(label).save(
            osp.join(ann_dir, f'{stem}_gtFine_labelTrainIds.png'))


def load_results(path: str) -> dict:
    """``ctta_results.json`` with the per-class IoU of absent classes (written as
    null: the file is strict JSON) read back as NaN."""
    import json
    with open(path) as f:
        res = json.load(f)
    for p in res['passes']:
        p['per_class_iou'] = {k: float('nan') if v is None else v
                              for k, v in p.get('per_class_iou', {}).items()}
    return res
