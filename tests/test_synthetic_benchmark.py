"""A miniature run of the main command's pipeline (data -> source -> 5 methods)."""
import json
import os.path as osp

from PIL import Image

from mmseg_moase.apis.synthetic_benchmark import (METHOD_CONFIGS,
                                                  run_synthetic_benchmark)


def test_miniature_benchmark_writes_table_json_and_plot(tmp_path):
    work = str(tmp_path / 'work')
    payload = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'),
        seeds=(0, 1),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=2, workers=1, progress=False),
        train_iters=3, train_batch_size=2, rounds=1)
    assert set(payload['methods']) == set(METHOD_CONFIGS)
    for name, t in payload['methods'].items():
        assert len(t['passes']) == 4  # 1 round x 4 domains
        assert t['seeds'] == (2 if name in ('CoTTA', 'MoASE') else 1)
        assert t['seconds_per_image'] > 0
        for p in t['passes'].values():
            assert 0 <= p['mean'] <= 100
    md = open(osp.join(work, 'comparison.md')).read()
    for name in METHOD_CONFIGS:
        assert f'| {name} |' in md
    assert '| Method | Seeds | Round | fog | night | rain | snow | Round mean |' in md
    data = json.load(open(osp.join(work, 'comparison.json')))
    assert data['source_model']['iterations'] == 3
    assert set(data['stage_seconds']) >= {'data_s', 'source_model_s', 'MoASE_s'}
    with Image.open(osp.join(work, 'miou_stream.png')) as img:
        assert img.size[0] > 300 and img.size[1] > 200
    # A second call reuses the data, the source model and every finished run.
    again = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'), seeds=(0, 1),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=2, workers=1, progress=False),
        train_iters=3, train_batch_size=2, rounds=1)
    assert again['methods'] == payload['methods']
    assert again['stage_seconds']['MoASE_s'] < 5
