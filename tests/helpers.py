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
