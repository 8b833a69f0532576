"""Writing the data sets: the file layout (Cityscapes-style source, ACDC-style
targets), ``meta.json``, the per-image RNG streams, parallel rendering workers
(:func:`generate_synthetic_city`) and a preview grid (:func:`render_preview`)."""
from __future__ import annotations

import json
import multiprocessing
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from .calibration import Severity, condition_severities, severity_record
from .constants import CLASS_SETS, CONDITIONS, GENERATOR_VERSION
from .scene import render_scene
from .weather import render_weather


# RNG stream ids: every image gets SeedSequence([seed, stream, index]).
_STREAMS = {'train': 0, 'val': 1, 'fog': 2, 'night': 3, 'rain': 4, 'snow': 5}
_TRAIN_CITIES = ('alphaville', 'bravoburg', 'charlieton')
_VAL_CITIES = ('deltaheim', )
_FRAMES_PER_SEQUENCE = 10
_OWNED = ('leftImg8bit', 'gtFine', 'rgb_anon', 'gt')


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Convert a float image in [0, 1] to uint8 (rounding, clipping)."""
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def scene_rng(seed: int, stream: str, index: int,
              part: int = 0) -> np.random.Generator:
    """The generator's RNG for one image.

    Args:
        seed: Data set seed.
        stream: ``'train'``, ``'val'`` or a weather condition; each stream draws
            different scenes.
        index: Image index inside the stream.
        part: 0 for the scene, 1 for its weather.

    Returns:
        A fresh :class:`numpy.random.Generator`.
    """
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _STREAMS[stream], int(index), part]))


class _Item(NamedTuple):
    stream: str
    index: int
    img: str  # relative paths
    ann: str


def _layout(num_train: int, num_val: int, num_target: int) -> List[_Item]:
    items = []
    for split, n, cities in (('train', num_train, _TRAIN_CITIES),
                             ('val', num_val, _VAL_CITIES)):
        for i in range(n):
            city = cities[i * len(cities) // max(n, 1)]
            stem = f'{city}_{i:06d}_000019'
            items.append(
                _Item(split, i, f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png',
                      f'gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png'))
    for cond in CONDITIONS:
        for i in range(num_target):
            seq = f'syn_{cond}_{i // _FRAMES_PER_SEQUENCE:03d}'
            name = f'{seq}_frame_{i % _FRAMES_PER_SEQUENCE:06d}'
            items.append(
                _Item(cond, i, f'rgb_anon/{cond}/train/{seq}/{name}_rgb_anon.png',
                      f'gt/{cond}/train/{seq}/{name}_gt_labelTrainIds.png'))
    return items


def render_item(seed: int, stream: str, index: int, size: Tuple[int, int],
                severity: float,
                class_set: str = 'benchmark') -> Tuple[np.ndarray, np.ndarray]:
    """Image (uint8 RGB) and train-id label of one data set entry.

    Args:
        seed: Data set seed.
        stream: ``'train'`` / ``'val'`` (clear weather) or a condition.
        index: Index within the stream.
        size: ``(height, width)``.
        severity: Condition strength; each image draws its own severity in
            ``severity * [0.75, 1.25]`` (clipped to [0, 1]).
        class_set: See :func:`render_scene`.

    Returns:
        ``(image, label)``.
    """
    scene = render_scene(scene_rng(seed, stream, index, 0), size,
                         class_set=class_set)
    img = scene.image
    if stream in CONDITIONS:
        rng = scene_rng(seed, stream, index, 1)
        sev = float(np.clip(severity * rng.uniform(0.75, 1.25), 0, 1))
        img = render_weather(scene, stream, sev, rng)
    return to_uint8(img), scene.label


def _write_item(job: Tuple[int, str, int, Tuple[int, int], float, str, str, str,
                           str]) -> None:
    """Render one entry and write its two PNGs (runs in worker processes)."""
    seed, stream, index, size, severity, class_set, root, img_rel, ann_rel = job
    img, lbl = render_item(seed, stream, index, size, severity, class_set)
    _save_png(img, osp.join(root, img_rel))
    _save_png(lbl, osp.join(root, ann_rel))


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; no OpenCV pool after fork


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _save_png(arr: np.ndarray, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.part'
    Image.fromarray(arr).save(tmp, format='PNG', compress_level=6)
    os.replace(tmp, path)


class _Progress:
    """A one-line text counter on stderr."""

    def __init__(self, total: int, enabled: bool, title: str) -> None:
        self.total, self.enabled, self.title, self.done = total, enabled, title, 0
        self.every = max(total // 100, 1)

    def update(self) -> None:
        self.done += 1
        if self.enabled and (self.done % self.every == 0 or self.done == self.total):
            sys.stderr.write(f'\r{self.title}: {self.done}/{self.total} images')
            if self.done == self.total:
                sys.stderr.write('\n')
            sys.stderr.flush()


def generate_synthetic_city(out_root: str, seed: int = 0,
                            size: Tuple[int, int] = (128, 256),
                            num_source_train: int = 1200,
                            num_source_val: int = 50, num_target: int = 64,
                            severity: Severity = None,
                            class_set: str = 'benchmark',
                            force: bool = False,
                            progress: bool = True,
                            workers: Optional[int] = None) -> Dict:
    """Write the synthetic source (Cityscapes layout) and targets (ACDC layout).

    Layout under ``out_root``::

        leftImg8bit/{train,val}/<city>/<city>_<seq:06d>_000019_leftImg8bit.png
        gtFine/{train,val}/<city>/<same stem>_gtFine_labelTrainIds.png
        rgb_anon/<cond>/train/<seq>/<seq>_frame_<k:06d>_rgb_anon.png
        gt/<cond>/train/<seq>/<seq>_frame_<k:06d>_gt_labelTrainIds.png
        meta.json

    for ``cond`` in fog, night, rain, snow. Every image is a distinct scene (own
    RNG stream per split/condition and index), so the targets share no scene
    with the source or with each other. The output is a pure function of the
    arguments: the same arguments give byte-identical files.

    Args:
        out_root: Output folder (created if missing).
        seed: Random seed.
        size: ``(height, width)`` of every image.
        num_source_train: Clear-weather training images.
        num_source_val: Clear-weather validation images.
        num_target: Images per adverse condition.
        severity: Strength of the conditions in [0, 1]: None (the calibrated
            per-condition values), a preset name (``'calibrated'``,
            ``'legacy'``: 0.7 everywhere, the data before generator 2.2.0), one
            number for every condition or a mapping condition -> number
            (:func:`~.calibration.condition_severities`).
        class_set: Which classes the scenes contain, see :func:`render_scene`.
        force: Replace an existing, different data set in ``out_root`` (its
            ``leftImg8bit``, ``gtFine``, ``rgb_anon``, ``gt`` folders and
            ``meta.json`` are deleted first; other files are left alone).
        progress: Print a progress counter to stderr.
        workers: Processes rendering in parallel (default: one per available
            core, at most 8; 1 renders in this process). Does not change the
            output. Parallel rendering needs the ``fork`` start method (Linux,
            macOS); elsewhere it falls back to one process.

    Returns:
        The meta data written to ``meta.json`` plus ``'written'``: how many
        images this call rendered (0 when the data set was already complete).

    Raises:
        ValueError: On invalid arguments.
        FileExistsError: If ``out_root`` is not empty and does not hold a data
            set made with the same arguments, unless ``force``.
    """
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise ValueError(f'size must be at least 16x16 pixels, got {size}')
    for name, n in (('num_source_train', num_source_train),
                    ('num_source_val', num_source_val), ('num_target', num_target)):
        if int(n) < 0:
            raise ValueError(f'{name} must be >= 0, got {n}')
    severities = condition_severities(severity)
    if class_set not in CLASS_SETS:
        raise ValueError(f'class_set must be one of {CLASS_SETS}, got {class_set!r}')
    meta = dict(generator='mmseg_moase.datasets.synthetic_city',
                version=GENERATOR_VERSION, seed=int(seed), size=[h, w],
                num_source_train=int(num_source_train),
                num_source_val=int(num_source_val), num_target=int(num_target),
                severity=severity_record(severity), class_set=class_set,
                conditions=list(CONDITIONS))
    meta_path = osp.join(out_root, 'meta.json')
    old = read_meta(meta_path)
    if osp.isdir(out_root) and os.listdir(out_root):
        if old != meta:
            if not force:
                why = ('has no meta.json' if old is None else
                       'holds a synthetic data set made with other arguments '
                       f'({_diff(old, meta)})')
                raise FileExistsError(
                    f'{out_root} is not empty and {why}; refusing to write into it. '
                    'Choose another folder, or pass force=True (--force) to '
                    'replace it.')
            for sub in _OWNED:
                shutil.rmtree(osp.join(out_root, sub), ignore_errors=True)
            if osp.exists(meta_path):
                os.remove(meta_path)
            old = None
    os.makedirs(out_root, exist_ok=True)
    if old != meta:  # written first, so an interrupted run can be resumed
        with open(meta_path, 'w') as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write('\n')
    items = _layout(int(num_source_train), int(num_source_val), int(num_target))
    todo = [it for it in items if not (osp.isfile(osp.join(out_root, it.img))
                                       and osp.isfile(osp.join(out_root, it.ann)))]
    jobs = [(int(seed), it.stream, it.index, (h, w),
             severities.get(it.stream, 0.0), class_set, out_root, it.img, it.ann)
            for it in todo]
    bar = _Progress(len(todo), progress and bool(todo), 'synthetic city')
    workers = _default_workers() if workers is None else int(workers)
    if (workers > 1 and len(jobs) > 1
            and 'fork' in multiprocessing.get_all_start_methods()):
        ctx = multiprocessing.get_context('fork')
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
            for _ in pool.imap_unordered(_write_item, jobs, chunksize=4):
                bar.update()
    else:
        for job in jobs:
            _write_item(job)
            bar.update()
    return dict(meta, written=len(todo))


def read_meta(path: str) -> Optional[Dict]:
    """A data set's ``meta.json``, or None when missing or unreadable (then it
    is not a set made with any arguments)."""
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _diff(old: Dict, new: Dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ', '.join(f'{k}: {old.get(k)!r} != {new.get(k)!r}' for k in keys)


def render_preview(palette: Sequence[Sequence[int]], seed: int = 0, index: int = 0,
                   size: Tuple[int, int] = (128, 256),
                   severity: Severity = None,
                   class_set: str = 'benchmark') -> np.ndarray:
    """One scene in clear weather, the four conditions and its colourised label.

    Args:
        palette: RGB colour per train id (e.g. Cityscapes' palette).
        seed: Seed of the scene (from the ``train`` stream).
        index: Index of the scene.
        size: ``(height, width)`` of each panel.
        severity: Condition strengths, as :func:`generate_synthetic_city`'s.
        class_set: See :func:`render_scene`.

    Returns:
        uint8 RGB image: a 2 x 3 grid of captioned panels.
    """
    scene = render_scene(scene_rng(seed, 'train', index, 0), size,
                         class_set=class_set)
    panels = [('clear (source)', to_uint8(scene.image))]
    severities = condition_severities(severity)
    for cond in CONDITIONS:
        rng = scene_rng(seed, cond, index, 1)
        panels.append((cond, to_uint8(render_weather(scene, cond,
                                                     severities[cond], rng))))
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    panels.append(('label', lut[scene.label]))
    out = []
    for name, img in panels:
        img = np.ascontiguousarray(img)
        cv2.putText(img, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(img, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
        out.append(np.pad(img, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    rows = [np.concatenate(out[i:i + 3], 1) for i in (0, 3)]
    return np.concatenate(rows, 0)
