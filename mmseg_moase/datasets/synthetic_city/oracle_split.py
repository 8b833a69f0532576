"""The oracle split of a synthetic city data set: labelled scenes of every
adverse condition that the stream does not show.

The benchmark's ``Oracle`` row fine-tunes the source model on them (the
headroom of adaptation). They come from the data set's own RNG streams at
indices from :data:`INDEX_OFFSET` on (the stream uses ``0 .. num_target - 1``),
so every one is a scene the stream does not contain, drawn and rendered like
the stream's: same seed, size, class set and per-condition severities (read
from the data set's ``meta.json``).
"""
import json
import os
import os.path as osp
import shutil
import sys
from typing import Dict, Optional

from .calibration import condition_severities, severity_record
from .constants import CONDITIONS, GENERATOR_VERSION
from .writer import (_FRAMES_PER_SEQUENCE, _diff, _save_png, read_meta,
                     render_item)

#: First scene index of the oracle split in each condition's RNG stream; far
#: above any stream length (ACDC's protocol: 400 per condition).
INDEX_OFFSET = 1_000_000
#: Split folder name (``rgb_anon/<cond>/<SPLIT>``), as ACDC's training split.
SPLIT = 'train'
_OWNED = ('rgb_anon', 'gt')


def oracle_root_of(data_root: str) -> str:
    """The default folder of ``data_root``'s oracle split: ``<data_root>_oracle``."""
    return osp.normpath(data_root) + '_oracle'


def _read_data_meta(data_root: str) -> Dict:
    path = osp.join(data_root, 'meta.json')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} not found: the oracle split is drawn like a generated '
            'synthetic data set; generate it first (tools/generate_synthetic_'
            f'city.py {data_root}).')
    with open(path) as f:
        meta = json.load(f)
    if meta.get('version') != GENERATOR_VERSION:
        raise ValueError(
            f'{path}: data set of generator {meta.get("version")!r}, but this '
            f'renderer is {GENERATOR_VERSION!r}: the oracle scenes would not be '
            'rendered like the stream. Regenerate the data set (tools/generate_'
            'synthetic_city.py --force).')
    return meta


def generate_oracle_split(data_root: str, out_root: Optional[str] = None,
                          num_per_condition: int = 64,
                          progress: bool = True) -> Dict:
    """Write (or reuse) the oracle split of the synthetic data set ``data_root``.

    Layout under ``out_root`` (ACDC's, as the stream's)::

        rgb_anon/<cond>/train/<seq>/<seq>_frame_<k:06d>_rgb_anon.png
        gt/<cond>/train/<seq>/<seq>_frame_<k:06d>_gt_labelTrainIds.png
        meta.json

    with ``<seq>`` = ``syn_<cond>_<index // 10:06d>`` and ``k = index % 10``
    for scene indices ``INDEX_OFFSET .. INDEX_OFFSET + num_per_condition - 1``.
    Like :func:`~.writer.generate_synthetic_city`, the output is a pure
    function of the arguments and the data set's ``meta.json``, missing images
    are rendered (an interrupted call resumes) and a complete split is reused.
    An oracle split of other arguments in ``out_root`` (e.g. its data set was
    regenerated with other severities) is replaced.

    Args:
        data_root: The generated data set whose stream the split goes with.
        out_root: Output folder; default :func:`oracle_root_of` ``(data_root)``.
        num_per_condition: Scenes per condition (the default stream has 64).
        progress: Print what is rendered.

    Returns:
        The split's ``meta.json`` content plus ``'out_root'`` and
        ``'written'`` (images rendered by this call).

    Raises:
        FileNotFoundError: ``data_root`` has no ``meta.json``.
        ValueError: ``num_per_condition`` < 1, a stream that reaches
            :data:`INDEX_OFFSET`, or a data set of another generator version.
        FileExistsError: ``out_root`` is not empty and holds no oracle split
            (no ``meta.json`` of this module).
    """
    if int(num_per_condition) < 1:
        raise ValueError(f'num_per_condition must be >= 1, got {num_per_condition}')
    data = _read_data_meta(data_root)
    if int(data['num_target']) > INDEX_OFFSET:
        raise ValueError(
            f'{data_root}: {data["num_target"]} images per condition reach the '
            f'oracle scenes (index {INDEX_OFFSET} on); use a shorter stream.')
    severities = condition_severities(data['severity'])
    out_root = out_root or oracle_root_of(data_root)
    meta = dict(generator='mmseg_moase.datasets.synthetic_city.oracle_split',
                version=GENERATOR_VERSION, seed=int(data['seed']),
                size=list(data['size']), class_set=data['class_set'],
                severity=severity_record(severities),
                conditions=list(CONDITIONS), split=SPLIT,
                index_offset=INDEX_OFFSET,
                num_per_condition=int(num_per_condition))
    meta_path = osp.join(out_root, 'meta.json')
    old = read_meta(meta_path)
    if osp.isdir(out_root) and os.listdir(out_root) and old != meta:
        if (old or {}).get('generator') != meta['generator']:
            raise FileExistsError(
                f'{out_root} is not empty and holds no oracle split (no '
                f'meta.json of {meta["generator"]}); refusing to write into '
                'it. Delete it or choose another folder (out_root).')
        # The split follows its data set (regenerated with other arguments):
        # replaced, never mixed.
        print(f'oracle split: replacing {out_root} ({_diff(old, meta)})',
              file=sys.stderr, flush=True)
        for sub in _OWNED:
            shutil.rmtree(osp.join(out_root, sub), ignore_errors=True)
        os.remove(meta_path)
        old = None
    os.makedirs(out_root, exist_ok=True)
    if old != meta:  # written first, so an interrupted call resumes
        with open(meta_path, 'w') as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write('\n')
    written = 0
    size = tuple(meta['size'])
    for cond in CONDITIONS:
        for index in range(INDEX_OFFSET, INDEX_OFFSET + int(num_per_condition)):
            seq = f'syn_{cond}_{index // _FRAMES_PER_SEQUENCE:06d}'
            stem = f'{seq}/{seq}_frame_{index % _FRAMES_PER_SEQUENCE:06d}'
            img_path = osp.join(out_root, 'rgb_anon', cond, SPLIT,
                                f'{stem}_rgb_anon.png')
            ann_path = osp.join(out_root, 'gt', cond, SPLIT,
                                f'{stem}_gt_labelTrainIds.png')
            if osp.isfile(img_path) and osp.isfile(ann_path):
                continue
            img, label = render_item(meta['seed'], cond, index, size,
                                     severities[cond], meta['class_set'])
            _save_png(img, img_path)
            _save_png(label, ann_path)
            written += 1
    if progress and written:
        print(f'oracle split: {written} images rendered -> {out_root}',
              flush=True)
    return dict(meta, out_root=out_root, written=written)
