"""A miniature run of the main command's pipeline (data -> source -> ViDA
warm-up -> 6 methods)."""
import json
import os
import os.path as osp

import pytest
from mmengine.runner import Runner

import mmseg_moase.datasets.synthetic_city as synthetic_city
from helpers import assert_plot, count_python_launches

from tools.synthetic_benchmark import (METHOD_CONFIGS, PROTOCOLS,
                                                  VARIANTS, aggregate,
                                                  method_spec,
                                                  needs_vida_warmup,
                                                  run_synthetic_benchmark)


def _count_work(monkeypatch) -> dict:
    """From now on, what the benchmark does rather than reuses: images the
    generator renders, trainings in this process (``Runner.train``) and
    Python processes it starts (stream runs, training stages)."""
    work = dict(rendered=[], trainings=[],
                launches=count_python_launches(monkeypatch))
    generate = synthetic_city.generate_synthetic_city

    def counting_generate(*args, **kwargs):
        meta = generate(*args, **kwargs)
        work['rendered'].append(meta['written'])
        return meta
    monkeypatch.setattr(synthetic_city, 'generate_synthetic_city',
                        counting_generate)
    train = Runner.train

    def counting_train(self):
        work['trainings'].append(self.work_dir)
        return train(self)
    monkeypatch.setattr(Runner, 'train', counting_train)
    return work


def test_miniature_benchmark_writes_table_json_and_plot(tmp_path,
                                                        monkeypatch):
    work = str(tmp_path / 'work')
    done = _count_work(monkeypatch)
    payload = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=1, workers=1, progress=False),
        train_iters=2, train_batch_size=2, rounds=1, jobs=2, warmup_iters=2,
        methods=[*METHOD_CONFIGS, 'Oracle'], oracle=dict(max_iters=2))
    # Every method, the learning-rate rows (MoASE-split, CoTTA-lr2e-4) and
    # the Oracle's headroom.
    assert set(payload['methods']) == {*METHOD_CONFIGS, 'Oracle'}
    # What ran: the data, the source model here, the two stages and every
    # row's stream beside each other (jobs=2).
    assert sum(done['rendered']) > 0 and len(done['trainings']) == 1
    runs = [c for c in done['launches'] if c[1].endswith('test_ctta.py')]
    assert len(runs) == len(METHOD_CONFIGS) + 1
    assert len(done['launches']) == len(runs) + 2  # ViDA warm-up, Oracle
    assert {'MoASE-split', 'CoTTA-lr2e-4'} <= set(METHOD_CONFIGS)
    # ViDA ran from the warm-up checkpoint, the others from the source model.
    warm = payload['source_model']['vida_warmup']
    assert warm['iterations'] == 2 and osp.isfile(warm['checkpoint'])
    vida_log = open(osp.join(work, 'vida', 'seed0', 'run.log')).read()
    assert warm['checkpoint'] in vida_log
    assert warm['checkpoint'] not in open(
        osp.join(work, 'cotta', 'seed0', 'run.log')).read()
    # Side by side (jobs=2) the trainings that feed some rows ran in
    # processes of their own, beside the stream runs.
    for stage in ('vida_warmup', 'oracle_model'):
        log = open(osp.join(work, 'source_model', os.pardir, stage,
                            'stage.log')).read()
        assert '[benchmark]' in log and 'clean val mIoU' in log
    # Side by side, each run's output went to its own log.
    assert osp.isfile(osp.join(work, 'moase', 'seed0', 'run.log'))
    for name, t in payload['methods'].items():
        assert len(t['passes']) == 4  # 1 round x 4 domains
        assert t['seeds'] == 1
        assert t['seconds_per_image'] > 0
        # The table holds what each run measured, pass by pass.
        run = json.load(open(osp.join(work, name.lower(), 'seed0',
                                      'ctta_results.json')))
        for rec in run['passes']:
            key = f"{rec['round'] + 1}/{rec['domain']}"
            assert t['passes'][key]['runs'] == [rec['mIoU']]
        assert t['mean_mIoU'] == run['summary']['mean_mIoU']
    md = open(osp.join(work, 'comparison.md')).read()
    for name in METHOD_CONFIGS:
        assert f'| {name} |' in md
    assert '| Method | Seeds | Round | fog | night | rain | snow | Round mean |' in md
    data = json.load(open(osp.join(work, 'comparison.json')))
    assert data['source_model']['iterations'] == 2
    assert set(data['stage_seconds']) >= {'data_s', 'source_model_s',
                                          'vida_warmup_s', 'MoASE_s'}
    assert "ViDA's warmed-up start" in md
    # The telemetry table: the teacher methods' student mIoU, MoASE's experts.
    tel = md[md.index('Telemetry'):]
    row = next(x for x in tel.splitlines() if x.startswith('| MoASE |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] != '-' and 0 <= float(cells[1]) <= 100
    assert cells[-1].count('/') == 4  # dead share / DAG weight of 4 experts
    src = next(x for x in tel.splitlines() if x.startswith('| Source |'))
    assert src.split('|')[2].strip() == '-'
    for name in METHOD_CONFIGS:
        assert osp.isfile(osp.join(work, name.lower(), 'seed0',
                                   'ctta_results.json'))
    assert_plot(osp.join(work, 'miou_stream.png'), (300, 200))
    # A second call reuses the data, the source model, the warm-up, the
    # Oracle and every finished run: nothing is rendered, trained or run.
    for counts in done.values():
        counts.clear()
    again = run_synthetic_benchmark(
        work_root=work, data_root=str(tmp_path / 'data'),
        generator=dict(size=(64, 128), num_source_train=4, num_source_val=2,
                       num_target=1, workers=1, progress=False),
        train_iters=2, train_batch_size=2, rounds=1, warmup_iters=2,
        methods=[*METHOD_CONFIGS, 'Oracle'], oracle=dict(max_iters=2))
    assert again['methods'] == payload['methods']
    assert done == dict(rendered=[0], trainings=[], launches=[])


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
    # The machine of each run, from its provenance (none here: said so).
    assert out['hosts'] == ['not recorded'] and 'Measured on: not recorded' in md
    runs['Source'][0]['provenance'] = dict(host=dict(
        cpu='AMD EPYC', torch_cpu_capability='AVX2', torch_threads=1))
    out = aggregate(runs, str(tmp_path), dict(clean_val_mIoU=70.0))
    assert out['hosts'] == ['AMD EPYC (AVX2, 1 thread(s))', 'not recorded']
    assert_plot(str(tmp_path / 'miou_stream.png'))


def test_protocols_and_variants():
    assert PROTOCOLS['default']['num_target'] * 4 * 3 > 693  # > EMA half-life
    assert PROTOCOLS['long']['num_target'] == 400  # ACDC's images per condition
    config, options = method_spec('MoASE-keep-adapters')
    assert config == METHOD_CONFIGS['MoASE']
    assert options == ['ctta_method.restore_adapters=False']
    assert all(base in METHOD_CONFIGS for base, _ in VARIANTS.values())
    assert needs_vida_warmup('ViDA') and needs_vida_warmup('ViDA-released-scales')
    assert not needs_vida_warmup('ViDA-fresh')
    assert not needs_vida_warmup('CoTTA')
    # The source config is self-contained: mmseg's tools/train.py on it trains
    # with the benchmark's class-balanced loss (weights of the default data).
    from mmengine.config import Config
    from tools.synthetic_benchmark import SOURCE_CONFIG
    loss = Config.fromfile(SOURCE_CONFIG).model.decode_head.loss_decode
    assert loss.type == 'WeightedCrossEntropyLoss'
    assert len(loss.class_weight) == 19 and min(loss.class_weight) > 0.1
    # The conditions: calibrated (photometric augmentation in the source
    # training) and legacy (the earlier tables' data and recipe).
    from tools.synthetic_benchmark import CONDITIONS, DEFAULT_METHODS

    def pmd(cfg):
        return any(t['type'] == 'PhotoMetricDistortion' for t in
                   Config.fromfile(cfg).train_dataloader.dataset.pipeline)
    assert pmd(CONDITIONS['calibrated']['source_config'])
    assert not pmd(CONDITIONS['legacy']['source_config'])
    assert CONDITIONS['legacy']['severity'] == 'legacy'
    assert {'CoTTA-lr2e-4', 'MoASE', 'Oracle'} <= set(DEFAULT_METHODS)
    with pytest.raises(ValueError, match='unknown method'):
        method_spec('MoASE-typo')
    # Every protocol shares the default's source model unless a work folder
    # is given; one run at a time keeps the environment's threads.
    from tools.synthetic_benchmark import source_model_dir, threads_per_job
    default = PROTOCOLS['default']['work_root']
    assert source_model_dir() == osp.join(default, 'source_model')
    assert source_model_dir(None, 'legacy') == osp.join(
        default + '_legacy', 'source_model')
    assert source_model_dir('w') == osp.join('w', 'source_model')
    assert threads_per_job(1) is None
    assert threads_per_job(2) == max(1, (os.cpu_count() or 1) // 2)
    assert threads_per_job(10 * (os.cpu_count() or 1)) == 1
    with pytest.raises(ValueError, match='unknown method'):
        run_synthetic_benchmark(methods=['MoASE-typo'])


def test_shortened_schedule_of_the_source_training():
    """One schedule cut for every shortened training (source model, warm-up,
    Oracle): 2,250 iterations with a 50-iteration warm-up, cut to 20."""
    from mmengine.config import Config

    from mmseg_moase.apis.warmup import shorten_schedule
    from tools.synthetic_benchmark import SOURCE_CONFIG
    cfg = Config.fromfile(SOURCE_CONFIG)
    assert cfg.train_cfg.max_iters == 2250
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [
        (0, 50), (50, 2250)]
    shorten_schedule(cfg, 20)
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval,
            cfg.default_hooks.checkpoint.interval) == (20, 20, 20)
    # The warm-up ends at a tenth of the new length, where the decay begins.
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [
        (0, 2), (2, 20)]
    with pytest.raises(ValueError, match='max_iters must be >= 1'):
        shorten_schedule(cfg, 0)


def test_every_default_row_has_a_measured_run_cost():
    """Side by side the costliest runs start first; a default row without its
    own cost would be ordered as MoASE's (the Oracle once was: first)."""
    from tools.synthetic_benchmark import DEFAULT_METHODS
    from tools.synthetic_benchmark.stages import RUN_COST, run_cost
    assert set(DEFAULT_METHODS) <= set(RUN_COST)
    order = sorted(DEFAULT_METHODS, key=run_cost, reverse=True)
    assert order[:2] == ['MoASE', 'ViDA'] and order[-1] == 'Source'
    assert run_cost('MoASE-released') == run_cost('MoASE')  # a variant: its base's
