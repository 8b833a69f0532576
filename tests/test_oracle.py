"""The Oracle row: its split shares no scene with the stream, and the
miniature benchmark trains it and writes its row."""
import hashlib
import json
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from mmseg_moase.datasets.synthetic_city import (CONDITIONS,
                                                 generate_synthetic_city,
                                                 render_item)
from mmseg_moase.datasets.synthetic_city.calibration import \
    condition_severities
from mmseg_moase.datasets.synthetic_city.oracle_split import (
    INDEX_OFFSET, generate_oracle_split, oracle_root_of)

# Tiny and not the default severities, so that "the data set's" is checked.
SEVERITY = dict(fog=0.5, night=0.4, rain=0.2, snow=0.6)
TINY = dict(size=(32, 64), num_source_train=4, num_source_val=2, num_target=3,
            severity=SEVERITY, workers=1, progress=False)


def _pixel_digests(root, cond, kind):
    """sha256 of the decoded pixels of every ``kind`` (rgb_anon / gt) PNG of
    ``cond`` under ``root``."""
    out = set()
    folder = osp.join(root, kind, cond)
    for d, _, files in os.walk(folder):
        for f in files:
            if f.endswith('.png'):
                arr = np.asarray(Image.open(osp.join(d, f)))
                out.add(hashlib.sha256(arr.tobytes()).hexdigest())
    return out


def test_oracle_split_shares_no_scene_with_the_stream(tmp_path):
    data = str(tmp_path / 'data')
    generate_synthetic_city(data, **TINY)
    split = generate_oracle_split(data, num_per_condition=4, progress=False)
    root = split['out_root']
    assert root == oracle_root_of(data) and split['written'] == 16
    # Drawn like the data set: its severities, seed, size and class set.
    with open(osp.join(data, 'meta.json')) as f:
        meta = json.load(f)
    assert condition_severities(split['severity']) == \
        condition_severities(meta['severity']) == SEVERITY
    for key in ('seed', 'size', 'class_set', 'version'):
        assert split[key] == meta[key]
    for cond in CONDITIONS:
        stream_imgs = _pixel_digests(data, cond, 'rgb_anon')
        stream_lbls = _pixel_digests(data, cond, 'gt')
        oracle_imgs = _pixel_digests(root, cond, 'rgb_anon')
        oracle_lbls = _pixel_digests(root, cond, 'gt')
        assert len(stream_imgs) == 3 and len(oracle_imgs) == 4
        assert len(oracle_lbls) == 4  # distinct scenes within the split too
        assert not stream_imgs & oracle_imgs, cond
        assert not stream_lbls & oracle_lbls, cond
    # The first oracle scene of a condition is that stream's scene at the
    # offset, rendered at the data set's severity of that condition.
    img, lbl = render_item(meta['seed'], 'night', INDEX_OFFSET,
                           tuple(meta['size']), SEVERITY['night'])
    name = 'syn_night_100000/syn_night_100000_frame_000000'
    on_disk = np.asarray(Image.open(
        osp.join(root, 'rgb_anon', 'night', 'train', f'{name}_rgb_anon.png')))
    assert np.array_equal(on_disk, img)
    assert np.array_equal(np.asarray(Image.open(osp.join(
        root, 'gt', 'night', 'train', f'{name}_gt_labelTrainIds.png'))), lbl)
    # Idempotent: the same call renders nothing; a split of other arguments
    # is replaced, a folder of anything else refused.
    assert generate_oracle_split(data, num_per_condition=4,
                                 progress=False)['written'] == 0
    assert generate_oracle_split(data, num_per_condition=2,
                                 progress=False)['written'] == 8
    assert len(_pixel_digests(root, 'fog', 'rgb_anon')) == 2
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('not an oracle split')
    with pytest.raises(FileExistsError, match='Delete it'):
        generate_oracle_split(data, str(foreign), progress=False)
    with pytest.raises(FileNotFoundError, match='generate_synthetic_city'):
        generate_oracle_split(str(tmp_path / 'nothing'))


def test_miniature_benchmark_writes_the_oracle_row(tmp_path):
    from tools.run_synthetic_benchmark import main
    work, data = str(tmp_path / 'work'), str(tmp_path / 'data')
    main(['--methods', 'Oracle', 'Source', '--work-dir', work,
          '--data-root', data, '--size', '32', '64', '--num-train', '4',
          '--num-val', '2', '--num-target', '3', '--train-iters', '4',
          '--oracle-iters', '4', '--rounds', '1', '--jobs', '1'])
    with open(osp.join(work, 'comparison.json')) as f:
        payload = json.load(f)
    assert set(payload['methods']) == {'Oracle', 'Source'}
    row = payload['methods']['Oracle']
    assert row['seeds'] == 1 and len(row['passes']) == 4  # 1 round x 4
    assert all(math.isfinite(p['mean']) for p in row['passes'].values())
    assert math.isfinite(row['mean_mIoU'])
    # Its own checkpoint, trained from the source model's, scored the row.
    source, oracle = (payload['source_model']['checkpoint'],
                      payload['source_model']['oracle']['checkpoint'])
    assert payload['source_model']['oracle']['iterations'] == 4
    assert payload['source_model']['oracle']['source_checkpoint'] == source
    for name, ckpt in (('oracle', oracle), ('source', source)):
        with open(osp.join(work, name, 'seed0', 'ctta_results.json')) as f:
            assert json.load(f)['provenance']['checkpoint'] == ckpt
    a, b = (torch.load(f, map_location='cpu', weights_only=True)['state_dict']
            for f in (source, oracle))
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    md = open(osp.join(work, 'comparison.md')).read()
    assert '| Oracle | 1 | 1 |' in md
    assert 'Oracle is not an adaptation method' in md
    assert 'upper bound' in md
    assert 'oracle_model_s' in payload['stage_seconds']
