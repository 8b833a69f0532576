"""A miniature run of the main command's pipeline (data -> source -> 5 methods)."""
import json
import os.path as osp

from PIL import Image

from mmseg_moase.apis.synthetic_benchmark import (METHOD_CONFIGS, aggregate,
                                                  run_synthetic_benchmark)


def test_miniature_benchmark_writes_table_json_and_plot(tmp_path):
    work = str(tmp_path / 'work')
    payload = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=1, workers=1, progress=False),
        train_iters=2, train_batch_size=2, rounds=1)
    assert set(payload['methods']) == set(METHOD_CONFIGS)
    for name, t in payload['methods'].items():
        assert len(t['passes']) == 4  # 1 round x 4 domains
        assert t['seeds'] == 1
        assert t['seconds_per_image'] > 0
        for p in t['passes'].values():
            assert 0 <= p['mean'] <= 100
    md = open(osp.join(work, 'comparison.md')).read()
    for name in METHOD_CONFIGS:
        assert f'| {name} |' in md
    assert '| Method | Seeds | Round | fog | night | rain | snow | Round mean |' in md
    data = json.load(open(osp.join(work, 'comparison.json')))
    assert data['source_model']['iterations'] == 2
    assert set(data['stage_seconds']) >= {'data_s', 'source_model_s', 'MoASE_s'}
    with Image.open(osp.join(work, 'miou_stream.png')) as img:
        assert img.size[0] > 300 and img.size[1] > 200
    # A second call reuses the data, the source model and every finished run.
    again = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=1, workers=1, progress=False),
        train_iters=2, train_batch_size=2, rounds=1)
    assert again['methods'] == payload['methods']
    assert again['stage_seconds']['MoASE_s'] < 5


def _fake_run(method, means):
    passes = [dict(round=r, domain=d, mIoU=m)
              for r, row in enumerate(means) for d, m in zip(('fog', 'night'), row)]
    flat = [m for row in means for m in row]
    return dict(summary=dict(domains=['fog', 'night'], rounds=len(means),
                             mean_mIoU=sum(flat) / len(flat), seconds=10.0,
                             images=20, skipped_updates=0, method=method),
                passes=passes)


def test_aggregate_means_and_spread_over_seeds(tmp_path):
    runs = dict(Source=[_fake_run('Source', [[40.0, 20.0]])],
                MoASE=[_fake_run('MoASE', [[42.0, 22.0]]),
                       _fake_run('MoASE', [[44.0, 26.0]])])
    out = aggregate(runs, str(tmp_path), dict(clean_val_mIoU=70.0))
    m = out['methods']['MoASE']
    assert m['passes']['1/fog'] == dict(mean=43.0, std=1.0, runs=[42.0, 44.0])
    assert m['passes']['1/night']['mean'] == 24.0
    assert m['mean_mIoU'] == 33.5 and m['mean_mIoU_std'] == 1.5
    md = (tmp_path / 'comparison.md').read_text()
    assert '| MoASE | 2 | 1 | 43.00 ± 1.00 | 24.00 ± 2.00 | 33.50 |' in md
    assert '| Source | 1 | 1 | 40.00 | 20.00 | 30.00 |' in md
    assert '| MoASE | 33.50 ± 1.50 | 0.500 | 1.0x |' in md
    assert (tmp_path / 'miou_stream.png').stat().st_size > 1000
