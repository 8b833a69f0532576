"""tools/ablate_moase.py (one option per row config) and tools/sweep_ctta.py
(selection on a validation stream, both tables) on a miniature stream."""
import glob
import hashlib
import importlib.util
import json
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT, config_path
from ctta_helpers import make_domains, save_source_checkpoint, write_config
from helpers import assert_plot, count_python_launches


def _tool(name):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _leaves(node, prefix=''):
    """Flatten a config dict to {dotted key: value}; lists are one leaf."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_leaves(v, f'{prefix}{k}.'))
    else:
        out[prefix[:-1]] = node
    return out


def _parent(path):
    """The config file a config inherits (one `_base_` string)."""
    with open(path) as f:
        text = f.read()
    base = text.split("_base_ = '", 1)[1].split("'", 1)[0]
    return osp.normpath(osp.join(osp.dirname(path), base))


def test_every_ablation_config_changes_exactly_one_option():
    files = sorted(glob.glob(config_path('synthetic', 'ablation', '*.py')))
    assert len(files) == 14
    ablate = _tool('ablate_moase')
    _, configs = ablate.row_configs(list(ablate.SUITES))
    assert sorted(configs.values()) == files  # every row has its config
    moase = config_path('synthetic',
                        'moase_mit-b0_3rounds_synthetic-city2weather-128x256.py')
    for f in files:
        parent = _parent(f)
        a = _leaves(Config.fromfile(f).to_dict())
        b = _leaves(Config.fromfile(parent).to_dict())
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)
                      and k != 'filename')
        assert len(diff) == 1, f'{osp.basename(f)}: {diff}'
        # The chain ends at the MoASE config.
        while parent != moase:
            assert 'ablation' in parent, f
            parent = _parent(parent)


def _resolved_leaves(path):
    """A config's leaves with its method's options as the run resolves them:
    the class's defaults, its default optimiser, then the config's values."""
    import mmseg_moase  # noqa: F401  (registers the methods)
    from mmseg_moase.methods.builder import method_defaults, resolve_method_cfg
    cfg = Config.fromfile(path)
    method = resolve_method_cfg(cfg.ctta_method)
    cfg.ctta_method = {**method_defaults(method['type']), **method}
    return _leaves(cfg.to_dict())


@pytest.mark.parametrize('row, base, key, value', [
    ('moase-split', 'moase', 'ctta_method.base_lr', 7.5e-6),
    ('cotta-lr2e-4', 'cotta', 'ctta_method.optim_wrapper.optimizer.lr', 2e-4),
])
def test_learning_rate_rows_change_their_option_only(row, base, key, value):
    """The learning-rate confound's rows: MoASE-split is MoASE with the
    pre-trained weights at CoTTA's rate; CoTTA-lr2e-4 is CoTTA with MoASE's
    optimiser (its rate and betas, nothing else)."""
    name = '_mit-b0_3rounds_synthetic-city2weather-128x256.py'
    a = _resolved_leaves(config_path('synthetic', row + name))
    b = _resolved_leaves(config_path('synthetic', base + name))
    diff = sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and k != 'filename')
    expected = [key]
    if row.startswith('cotta'):  # MoASE's Adam: betas (0.9, 0.99)
        expected.append('ctta_method.optim_wrapper.optimizer.betas')
        assert tuple(a[expected[1]]) == (0.9, 0.99)
    assert diff == sorted(expected)
    assert a[key] == value
    moase = _resolved_leaves(config_path('synthetic', 'moase' + name))
    assert moase['ctta_method.base_lr'] == moase['ctta_method.adapter_lr'] \
        == 2e-4  # the paper's one group


def test_ablation_table_and_plot_from_runs(tmp_path):
    ablate = _tool('ablate_moase')
    names, _ = ablate.row_configs(['components', 'experts'])
    methods = {}
    for i, n in enumerate(names):
        methods[n] = dict(mean_mIoU=20.0 + i, mean_mIoU_std=0.0, seeds=1,
                          student_mean_mIoU=19.0,
                          telemetry={'run_mean.expert0.dead_share': 0.5,
                                     'run_mean.expert1.dead_share': 0.0,
                                     'drift.student.experts_abs': 0.01})
    payload = dict(methods=methods)
    md = ablate.ablation_table(payload, ['components', 'experts'])
    moase = methods['MoASE']['mean_mIoU']
    assert '| CoTTA (no adapter) | 20.00 | - | ' + f'{20 - moase:+.2f}' in md
    assert '| + SDD | 22.00 | +1.00 |' in md
    assert '| 0.25 |' in md  # mean dead share over the experts
    path = str(tmp_path / 'a.png')
    ablate.plot_ablation(payload, ['components', 'experts'], path)
    assert_plot(path)


def test_lr_and_momentum_options_per_method():
    sweep = _tool('sweep_ctta')
    syn = lambda m: Config.fromfile(config_path(  # noqa: E731
        'synthetic', f'{m}_mit-b0_3rounds_synthetic-city2weather-128x256.py'))
    assert sweep.lr_options(syn('moase'), 10.0) == [
        'ctta_method.base_lr=0.002', 'ctta_method.adapter_lr=0.002']
    assert sweep.lr_options(syn('vida'), 0.5) == [
        'ctta_method.adapter_lr=0.0001', 'ctta_method.lr=3.75e-06']
    assert sweep.lr_options(syn('cotta'), 2.0) == [
        'ctta_method.optim_wrapper.optimizer.lr=1.5e-05']
    with pytest.raises(ValueError, match='no learning rate'):
        sweep.lr_options(syn('source'), 2.0)
    assert sweep.momentum_options(syn('cotta'), 0.99) == [
        'custom_hooks.0.momentum=0.99']
    assert sweep.spec_value('momentum', syn('cotta')) == 0.999
    assert sweep.spec_value('ctta_method.threshold', syn('cotta')) == 0.69
    assert sweep.select({0.1: 20.0, 1.0: 21.5, 10.0: 21.5}) == 1.0


def test_sweep_selects_on_validation_and_writes_both_tables(tmp_path,
                                                           monkeypatch):
    """TENT at two learning-rate factors on a 2-image-per-domain stream: the
    selection is the validation argmax, both test rows are written, and a
    second call reruns nothing."""
    val, test = str(tmp_path / 'val'), str(tmp_path / 'test')
    make_domains(val, ('fog', 'night'), num=2)
    for i, d in enumerate(('fog', 'night')):  # other scenes than val's
        from helpers import write_cityscapes_tree
        write_cityscapes_tree(test, split=d, city='seq0', num=2,
                              size=(32, 64), seed=10 + i)
    config = write_config(str(tmp_path / 'tent.py'), val, 'TENT')
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    work = str(tmp_path / 'sweep')
    opts = lambda root: [  # noqa: E731
        f'ctta_stream.domains.{i}.dataset.data_root={root}' for i in range(2)]
    argv = [f'{config}={ckpt}', '--values', '1', '3000', '--val-options',
            *opts(val), '--test-options', *opts(test), '--work-dir', work,
            '--jobs', '1']
    sweep = _tool('sweep_ctta')
    launches = count_python_launches(monkeypatch)
    sweep.main(argv)
    out = json.load(open(osp.join(work, 'sweep.json')))
    r = out['methods']['tent']
    curve = {float(k): v for k, v in r['validation'].items()}
    assert r['selected_value'] == max(curve, key=curve.get)
    assert r['spec_value'] == 1.0
    md = open(osp.join(work, 'sweep.md')).read()
    assert '| TENT | config | 1 |' in md
    assert f"| TENT | selected | {r['selected_value']:g} |" in md
    assert_plot(osp.join(work, 'sweep.png'))
    for stream, tag in (('val', 'lr1'), ('val', 'lr3000'), ('test', 'lr1')):
        res = osp.join(work, 'tent', stream, tag, 'ctta_results.json')
        assert osp.isfile(res)
        # The test stream's data root was the test folder, the val one val's.
        cfg_dump = glob.glob(osp.join(work, 'tent', stream, tag, '*.py'))
        text = open(cfg_dump[0]).read() if cfg_dump else ''
        assert (test if stream == 'test' else val) in text
    # One tools/test_ctta.py run per (stream, value), none again on a
    # second call.
    runs = sorted(glob.glob(osp.join(work, 'tent', '*', '*',
                                     'ctta_results.json')))
    assert len(launches) == len(runs) >= 3
    assert all(c[1].endswith('test_ctta.py') for c in launches)
    launches.clear()
    sweep.main(argv)
    assert launches == []
    with pytest.raises(SystemExit, match='validation stream'):
        sweep.main([f'{config}={ckpt}', '--work-dir', work])


def test_sweep_reuses_the_benchmarks_own_run_only_when_it_is_that_run(
        tmp_path, monkeypatch):
    """--synthetic: the test-stream run at the config's values is the
    benchmark's run of that config when finished, from the same checkpoint
    (sha256) and seed; anything else is run again."""
    sweep = _tool('sweep_ctta')
    monkeypatch.setitem(sweep.PROTOCOLS, 'default',
                        dict(sweep.PROTOCOLS['default'],
                             work_root=str(tmp_path / 'bench')))
    config = osp.join(sweep.CONFIG_DIR, sweep.METHOD_CONFIGS['CoTTA'])
    ckpt = tmp_path / 'source.pth'
    ckpt.write_bytes(b'weights')
    run = tmp_path / 'bench' / 'cotta' / 'seed0'
    run.mkdir(parents=True)

    def write(done=12, seed=0, sha=None, cfg=config):
        sha = sha or hashlib.sha256(b'weights').hexdigest()
        (run / 'ctta_results.json').write_text(json.dumps(dict(
            summary=dict(passes_done=done, passes_total=12),
            provenance=dict(seed=seed, config=cfg, checkpoint_sha256=sha))))

    write()
    assert sweep.benchmark_run(config, str(ckpt), 0)['summary'][
        'passes_done'] == 12
    assert sweep.benchmark_run(config, str(ckpt), 1) is None  # other seed
    for changed in (dict(done=5), dict(seed=1), dict(sha='0' * 64),
                    dict(cfg='other.py')):
        write(**changed)
        assert sweep.benchmark_run(config, str(ckpt), 0) is None, changed
    other = str(tmp_path / 'mine.py')  # not one of the benchmark's configs
    assert sweep.benchmark_run(other, str(ckpt), 0) is None
