"""Faults and provenance: a resume that refuses a changed run, a finished run
resumed, SIGTERM, truncated states, foreign checkpoints, unreadable images,
options the loop would overwrite, where results came from. (Skipped updates,
collapses, the work dir lock and a full disk: test_run_guards.py.)"""
import hashlib
import json
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

from mmseg_moase.apis import prepare_ctta_config

from conftest import ROOT
from ctta_helpers import pass_table, read_results
from ctta_helpers import make_domains, save_source_checkpoint, setup_run, \
    write_config
from step_signal_hook import hook_env, write_signal_config

TOOL = osp.join(ROOT, 'tools', 'test_ctta.py')
ENV = dict(os.environ, PYTHONPATH=ROOT)


def _run(cfg):
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


_results, _table = read_results, pass_table


def _stream(tmp_path, method='CoTTA', rounds=1, num=3, extra=''):
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        make_domains(data, ('fog', 'night'), num=num)
    config = write_config(str(tmp_path / f'{method}.py'), data, method,
                          rounds=rounds, extra=extra)
    ckpt = str(tmp_path / 'source.pth')
    if not osp.isfile(ckpt):
        save_source_checkpoint(config, ckpt)
    return data, config, ckpt


def test_resume_refuses_changed_settings_and_force_records_it(tmp_path):
    _, config, ckpt = _stream(tmp_path)
    work = str(tmp_path / 'w')
    _run(prepare_ctta_config(config, ckpt, work, seed=0))
    lr = {'ctta_method.optim_wrapper.optimizer.lr': 1e-3}
    cfg = prepare_ctta_config(config, ckpt, work, cfg_options=lr, resume=True,
                              seed=0)
    with pytest.raises(ValueError) as e:
        _run(cfg)
    msg = str(e.value)
    assert 'method.optim_wrapper.optimizer.lr: 7.5e-06 -> 0.001' in msg
    assert '--force' in msg
    # Another seed or another checkpoint is refused too.
    with pytest.raises(ValueError, match=r'seed: 0 -> 5'):
        _run(prepare_ctta_config(config, ckpt, work, resume=True, seed=5))
    other = str(tmp_path / 'other.pth')
    save_source_checkpoint(config, other, seed=1)
    with pytest.raises(ValueError, match='checkpoint_sha256'):
        _run(prepare_ctta_config(config, other, work, resume=True, seed=0))
    # --force: continues (the run had finished: its table), note recorded.
    _run(prepare_ctta_config(config, ckpt, work, cfg_options=lr, resume=True,
                             seed=0, force=True))
    notes = _results(work)['notes']
    assert len(notes) == 1 and 'optimizer.lr' in notes[0]
    assert 'Note: resumed with --force' in open(
        osp.join(work, 'ctta_results.md')).read()


def test_finished_run_resumed_prints_its_table_and_exits_0(tmp_path):
    _, config, ckpt = _stream(tmp_path, 'Source')
    work = str(tmp_path / 'w')
    cmd = [sys.executable, TOOL, config, ckpt, '--work-dir', work]
    subprocess.run(cmd, check=True, env=ENV, capture_output=True, timeout=600)
    before = _table(work)
    out = subprocess.run(cmd + ['--resume'], env=ENV, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert 'this run had finished' in text and '| Source | 1 |' in text
    assert _table(work) == before


def test_sigterm_saves_and_the_resumed_run_equals_an_uninterrupted_one(
        tmp_path):
    """SIGTERM to the whole process group, as Slurm sends it: the loader's
    worker (which torch makes exit on it) dies too, and the step in progress
    still finishes and the state is saved at the next image."""
    # CoTTA with stochastic restore: the resumed run replays the RNG too.
    _, config, ckpt = _stream(tmp_path, rounds=2, num=4)
    full = str(tmp_path / 'full')
    subprocess.run([sys.executable, TOOL, config, ckpt, '--work-dir', full,
                    '--seed', '3'], check=True, env=ENV, capture_output=True,
                   timeout=600)
    part = str(tmp_path / 'part')
    state = osp.join(part, 'ctta_state.pth')
    worker = ['--cfg-options', 'ctta_stream.dataloader.num_workers=1']
    # SIGTERM to the run's process group at the end of step 6 of 16 (pass 1,
    # its second image), sent by the run itself (a hook): step 6 finishes,
    # its state is saved, and the run stops before step 7.
    term_cfg = write_signal_config(str(tmp_path / 'term.py'), config, step=6,
                                   sig='SIGTERM', group=True)
    proc = subprocess.run([sys.executable, TOOL, term_cfg, ckpt, '--work-dir',
                           part, '--seed', '3', *worker], env=hook_env(ENV),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert 'interrupted by SIGTERM at image 2 of R1/2 night' in out, out[-2000:]
    assert '--resume' in out
    s = torch.load(state, weights_only=True)
    assert (s['pass_idx'], s['image_idx']) == (1, 2)
    assert len(_table(part)) == 1  # the first pass's row only
    assert 'DataLoader worker' not in out, out[-2000:]
    subprocess.run([sys.executable, TOOL, config, ckpt, '--work-dir', part,
                    '--seed', '3', '--resume', *worker], check=True, env=ENV,
                   capture_output=True, timeout=600)
    assert _table(part) == _table(full) and len(_table(full)) == 4


def test_truncated_state_names_the_file(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    os.makedirs(paths['work'], exist_ok=True)
    state = osp.join(paths['work'], 'ctta_state.pth')
    with open(state, 'wb') as f:
        f.write(b'PK\x03\x04 truncated')
    cfg.test_cfg.resume = True
    with pytest.raises(ValueError, match='resume state cannot be read') as e:
        _run(cfg)
    assert state in str(e.value) and 'Delete it' in str(e.value)


def test_text_file_as_checkpoint_is_named(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    bad = str(tmp_path / 'notes.pth')
    with open(bad, 'w') as f:
        f.write('these are not weights\n')
    cfg.test_cfg.checkpoint = bad
    with pytest.raises(ValueError, match='is not a PyTorch checkpoint') as e:
        _run(cfg)
    assert bad in str(e.value)


def test_unreadable_image_mid_stream_saves_progress(tmp_path):
    data, config, ckpt = _stream(tmp_path, 'TENT', num=4)
    imgs = sorted(
        os.path.join(dp, f) for dp, _, fs in os.walk(osp.join(
            data, 'leftImg8bit', 'night')) for f in fs)
    with open(imgs[2], 'rb') as f:
        good = f.read()
    with open(imgs[2], 'wb') as f:
        f.write(b'not an image')
    work = str(tmp_path / 'w')
    cfg = prepare_ctta_config(config, ckpt, work, seed=0)
    with pytest.raises(ValueError) as e:
        _run(cfg)
    msg = str(e.value)
    assert "domain 'night'" in msg and imgs[2] in msg and '--resume' in msg
    s = torch.load(osp.join(work, 'ctta_state.pth'), weights_only=True)
    assert (s['pass_idx'], s['image_idx']) == (1, 2)
    with open(imgs[2], 'wb') as f:
        f.write(good)
    _run(prepare_ctta_config(config, ckpt, work, resume=True, seed=0))
    full = str(tmp_path / 'full')
    _run(prepare_ctta_config(config, ckpt, full, seed=0))
    assert _table(work) == _table(full)


@pytest.mark.parametrize('key, target', [
    ('test_dataloader.dataset.data_root', 'ctta_stream.dataloader'),
    ('test_evaluator.type', 'ctta_evaluator'),
    ('test_cfg.rounds', 'ctta_cfg')])
def test_options_the_loop_would_overwrite_are_refused(tmp_path, key, target):
    _, config, ckpt = _stream(tmp_path, 'Source')
    with pytest.raises(ValueError, match=target):
        prepare_ctta_config(config, ckpt, str(tmp_path / 'w'),
                            cfg_options={key: 'x'})


def test_only_tested_launchers_are_offered(tmp_path):
    _, config, ckpt = _stream(tmp_path, 'Source')
    with pytest.raises(ValueError, match="'slurm' is not supported.*torchrun"):
        prepare_ctta_config(config, ckpt, str(tmp_path / 'w'),
                            launcher='slurm')
    proc = subprocess.run([sys.executable, TOOL, config, ckpt, '--launcher',
                           'mpi'], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "invalid choice: 'mpi'" in proc.stderr


def test_results_carry_their_provenance(tmp_path):
    _, config, ckpt = _stream(tmp_path, 'MoASE', num=1)
    works = {}
    for teacher in ('cotta', 'single'):
        works[teacher] = str(tmp_path / teacher)
        _run(prepare_ctta_config(
            config, ckpt, works[teacher], seed=7,
            cfg_options={'ctta_method.teacher': teacher}))
    prov = _results(works['single'])['provenance']
    with open(ckpt, 'rb') as f:
        assert prov['checkpoint_sha256'] == hashlib.sha256(f.read()).hexdigest()
    assert prov['config'] == config and prov['seed'] == 7
    assert osp.isfile(prov['resolved_config'])
    assert prov['mmseg_moase_version']
    host = prov['host']  # the CPU kind and thread count change the floats
    assert host['torch_cpu_capability'] == torch.backends.cpu.get_cpu_capability()
    assert host['torch_threads'] >= 1 and host['machine']
    labels = {t: _results(w)['provenance']['method_label']
              for t, w in works.items()}
    assert labels['cotta'] != labels['single']
    assert "teacher='single'" in labels['single']
    # Strict JSON.
    with open(osp.join(works['single'], 'ctta_results.json')) as f:
        json.loads(f.read(), parse_constant=lambda c: pytest.fail(c))


def test_the_stream_declares_the_plain_view_once(tmp_path):
    """The loop gives the method the stream's plain view; a resizing test
    pipeline without a declaration is refused rather than guessed; a method
    option that contradicts the stream is refused."""
    cfg, _ = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=1)
    cfg.test_cfg.plain_view_index = 4  # scale 1.0, unflipped of the 14 views
    runner = _run(cfg)
    assert runner.test_loop.method.view_index == 4
    cfg, _ = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=1, work='w2')
    cfg.test_dataloader.dataset.pipeline.insert(
        1, dict(type='Resize', scale_factor=0.5, keep_ratio=True))
    with pytest.raises(ValueError, match='ctta_stream.plain_view_index'):
        _run(cfg)
    cfg, _ = setup_run(tmp_path, 'CoTTA', domains=('fog', ), num=1, work='w3')
    cfg.test_cfg.plain_view_index = 4
    cfg.test_cfg.method.view_index = 2
    with pytest.raises(ValueError, match='declares plain_view_index=4'):
        _run(cfg)
