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


def assert_plot(path: str, min_size: Sequence[int] = (300, 200),
                min_colour_share: float = 0.002) -> None:
    """``path`` is a drawn plot: a PNG that decodes, at least ``min_size``
    (width, height) pixels, with ink (over 1% of the pixels not white) and
    plotted data (over ``min_colour_share`` of the pixels coloured: the axes,
    ticks and text of an empty figure are black and grey only)."""
    with Image.open(path) as img:
        assert img.format == 'PNG', (path, img.format)
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1], \
            (path, img.size)
        rgb = np.asarray(img.convert('RGB')).astype(np.int16)
    ink = float((rgb.min(axis=-1) < 245).mean())
    colour = float((rgb.max(axis=-1) - rgb.min(axis=-1) > 60).mean())
    assert ink > 0.01, f'{path}: blank ({ink:.2%} of the pixels not white)'
    assert colour > min_colour_share, \
        f'{path}: no plotted data ({colour:.3%} of the pixels coloured)'


def count_python_launches(monkeypatch) -> list:
    """Record every Python process started through ``subprocess.run`` (a
    tool run such as ``tools/test_ctta.py``, a training stage) from now to
    the end of the test; returns the list their command lines are added to.
    """
    import subprocess
    import sys
    launches: list = []
    run = subprocess.run

    def counting_run(cmd, *args, **kwargs):
        if isinstance(cmd, (list, tuple)) and cmd and cmd[0] == sys.executable:
            launches.append(list(cmd))  # list.append: safe from any thread
        return run(cmd, *args, **kwargs)
    monkeypatch.setattr(subprocess, 'run', counting_run)
    return launches
