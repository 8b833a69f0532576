"""What guards a run's work dir and table (issue 27): a second run into a live
work dir, a disk that fills while the state is saved, a checkpoint with
non-finite weights, and a collapse told apart from skipped updates, each with
its message, the exit status of tools/test_ctta.py and the files it leaves."""
import collections
import errno
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

from mmseg_moase.apis import prepare_ctta_config
from mmseg_moase.engine.loops.work_dir_lock import LOCK_FILE, WorkDirLock
from mmseg_moase.evaluation.verdict import EXIT_UNTRUSTED, run_verdict
from mmseg_moase.utils import fileio
from mmseg_moase.utils.fileio import FileWriteError, write_atomically
from tools import test_ctta

from conftest import ROOT
from ctta_helpers import (make_domains, pass_table, read_results,
                          save_source_checkpoint, write_config)

TOOL = osp.join(ROOT, 'tools', 'test_ctta.py')
ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
#: What a run writes into its work dir that another run must not touch.
RUN_FILES = ('ctta_state.pth', 'ctta_results.json', 'ctta_results.csv',
             'ctta_results.md', 'ctta_config.py')
Usage = collections.namedtuple('Usage', 'total used free')
# A child that holds the work dir's lock until its stdin closes.
HOLDER = ('import sys; from mmseg_moase.engine.loops.work_dir_lock import '
          'WorkDirLock; WorkDirLock(sys.argv[1]).acquire(); print("locked", '
          'flush=True); sys.stdin.read()')


def _stream(tmp_path, method='TENT', num=3):
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        make_domains(data, ('fog', 'night'), num=num)
    config = write_config(str(tmp_path / f'{method}.py'), data, method)
    ckpt = str(tmp_path / 'source.pth')
    if not osp.isfile(ckpt):
        save_source_checkpoint(config, ckpt)
    return config, ckpt


def _files(work):
    out = {}
    for name in RUN_FILES:
        with open(osp.join(work, name), 'rb') as f:
            out[name] = f.read()
    return out


_results, _table = read_results, pass_table


# ----------------------------------------------------- two runs, one work dir
def test_second_run_into_a_live_work_dir_is_refused(tmp_path):
    """The test process holds the lock as a live run does; a second
    tools/test_ctta.py into the work dir (another seed, as a pasted command
    might) exits 1 naming the holder's pid and the work dir, and changes none
    of the first run's files."""
    config, ckpt = _stream(tmp_path, 'Source')
    work = str(tmp_path / 'w')
    test_ctta.main([config, ckpt, '--work-dir', work, '--seed', '0'])
    before = _files(work)
    lock = WorkDirLock(work)
    lock.acquire()
    try:
        proc = subprocess.run([sys.executable, TOOL, config, ckpt,
                               '--work-dir', work, '--seed', '1'], env=ENV,
                              capture_output=True, text=True, timeout=600)
    finally:
        lock.release()
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert (f'WorkDirLocked: work dir {work} is in use by another CTTA run: '
            f'pid {os.getpid()} on host ') in last, last
    assert f'holds {osp.join(work, LOCK_FILE)}' in last
    assert 'pass another --work-dir' in last
    assert _files(work) == before


def test_lock_left_by_a_killed_run_is_taken_over(tmp_path, capfd):
    """kill -9 leaves the holder's record but no lock: the next run takes it
    over, says whose it was, and leaves the lock file empty at its end."""
    config, ckpt = _stream(tmp_path, 'Source')
    work = str(tmp_path / 'w')
    os.makedirs(work)
    child = subprocess.Popen([sys.executable, '-c', HOLDER, work], env=ENV,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == 'locked'
    child.kill()
    child.wait()
    lock_file = osp.join(work, LOCK_FILE)
    with open(lock_file) as f:
        assert json.load(f)['pid'] == child.pid
    assert test_ctta.main([config, ckpt, '--work-dir', work]) == 0
    out = ''.join(capfd.readouterr())
    assert (f'{lock_file}: taking over the lock left by pid {child.pid} on '
            'host ') in out
    assert 'which is no longer running' in out
    with open(lock_file) as f:
        assert f.read() == ''
    assert len(_table(work)) == 2


# ------------------------------------------------------------- a full disk
def test_full_disk_while_saving_keeps_the_previous_state(tmp_path,
                                                          monkeypatch):
    """The 4th state save (pass 2, image 1) meets a full disk after writing
    part of the file: one error names the file, the cause and the intact
    state; the .tmp file is gone, the previous state byte-identical, and
    --resume from it gives the table of an uninterrupted run."""
    config, ckpt = _stream(tmp_path)
    work = str(tmp_path / 'w')
    state = osp.join(work, 'ctta_state.pth')
    real_save = torch.save
    seen = dict(saves=0, previous=None)

    def full_disk(obj, f, *args, **kwargs):
        if getattr(f, 'name', '') == state + '.tmp':
            seen['saves'] += 1
            # save_interval=1, 3 images per pass: (1, 1), (1, 2), end of
            # pass 1, then this one.
            if seen['saves'] == 4:
                with open(state, 'rb') as g:
                    seen['previous'] = g.read()
                f.write(b'PK\x03\x04 part of a state')
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', full_disk)
    argv = [config, ckpt, '--work-dir', work, '--seed', '0']
    with pytest.raises(FileWriteError) as e:
        test_ctta.main(argv)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (
        f'could not write {state}: no space left on the device ({work}). The '
        f'previous state {state} (it continues at pass 2/2, image 0) is '
        'intact: free space and run the same command with --resume to '
        'continue from there. (The partial ctta_state.pth.tmp is removed.)')
    assert not osp.exists(state + '.tmp')
    with open(state, 'rb') as g:
        assert g.read() == seen['previous']
    assert [p[:2] for p in _table(work)] == [(0, 'fog')]
    assert test_ctta.main(argv + ['--resume']) == 0
    full = str(tmp_path / 'full')
    assert test_ctta.main([config, ckpt, '--work-dir', full, '--seed', '0']) \
        == 0
    assert _table(work) == _table(full) and len(_table(full)) == 2


def test_torch_writer_on_a_full_device_exits_1_naming_the_file(tmp_path):
    """torch's own writer on a full device (the state's temporary file is
    /dev/full): exit 1, the message names the file and the cause, and the
    temporary file is removed."""
    if not os.access('/dev/full', os.W_OK):
        pytest.skip('no /dev/full')
    config, ckpt = _stream(tmp_path)
    work = str(tmp_path / 'w')
    state = osp.join(work, 'ctta_state.pth')
    os.makedirs(work)
    os.symlink('/dev/full', state + '.tmp')
    proc = subprocess.run([sys.executable, TOOL, config, ckpt, '--work-dir',
                           work], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f'mmseg_moase.utils.fileio.FileWriteError: could not write {state}: '
        f'no space left on the device ({work}). No resume state had been '
        'saved yet: free space and run the command again. (The partial '
        'ctta_state.pth.tmp is removed.)')
    assert not osp.lexists(state + '.tmp') and not osp.exists(state)


def test_write_checks_free_space_first(tmp_path, monkeypatch):
    """Too little free space: refused before a byte is written. A writer
    error without an errno (torch's ``unexpected pos``) on a disk that is
    then full is reported as a full disk. The old file stays either way."""
    path = str(tmp_path / 'ctta_state.pth')
    with open(path, 'wb') as f:
        f.write(b'old state')
    free = [5 << 20]  # what disk_usage answers, call by call
    monkeypatch.setattr(fileio.shutil, 'disk_usage',
                        lambda d: Usage(1 << 30, 0, free.pop(0)))
    with pytest.raises(FileWriteError) as e:
        write_atomically(path, lambda f: f.write(b'new'), 6 << 20, 'KEPT.')
    assert str(e.value) == (f'not writing {path}: no space left on the device '
                            f'(5.0 MiB free on {tmp_path}, about 6.0 MiB '
                            'needed). KEPT.')
    assert e.value.errno == errno.ENOSPC

    def torch_like(f):
        f.write(b'partial')
        raise RuntimeError('[enforce fail at inline_container.cc:672] . '
                           'unexpected pos 704 vs 598')

    free[:] = [8 << 20, 0]  # before the write, then after it
    with pytest.raises(FileWriteError) as e:
        write_atomically(path, torch_like, 6 << 20, 'KEPT.')
    assert str(e.value).startswith(
        f'could not write {path}: no space left on the device (0.0 MiB free '
        f'on {tmp_path}, about 6.0 MiB needed). KEPT.')
    assert e.value.errno == errno.ENOSPC
    assert not osp.exists(path + '.tmp')
    with open(path, 'rb') as f:
        assert f.read() == b'old state'


# ------------------------------------------------ a checkpoint holding NaN
def test_checkpoint_with_a_nan_tensor_is_refused(tmp_path):
    config, ckpt = _stream(tmp_path)
    ck = torch.load(ckpt, weights_only=True)
    ck['state_dict']['decode_head.conv_seg.weight'][3, 5, 0, 0] = float('nan')
    bad = str(tmp_path / 'nan.pth')
    torch.save(ck, bad)
    work = str(tmp_path / 'w')
    with pytest.raises(ValueError) as e:
        test_ctta.main([config, bad, '--work-dir', work])
    n = len(ck['state_dict'])
    assert str(e.value) == (
        f'{bad}: `decode_head.conv_seg.weight` holds non-finite values (1 NaN, '
        f'0 inf of 304); 0 more of its {n} tensors do. These weights are '
        'broken (a training run that diverged, or a damaged file) and give no '
        'usable predictions: use another checkpoint (e.g. an earlier one of '
        'the same training).')
    assert not any(osp.exists(osp.join(work, f)) for f in RUN_FILES)


# -------------------------------------------------------------- collapses
def test_learning_rate_1e30_is_a_collapse_and_exits_3(tmp_path):
    """TENT at lr 1e30 on the miniature stream (2 domains x 3 images): Adam's
    first step moves every weight by ~1e30, so image 0's update goes through
    and breaks the model, and the 5 losses after it are not finite."""
    config, ckpt = _stream(tmp_path)
    work = str(tmp_path / 'w')
    argv = [config, ckpt, '--work-dir', work, '--seed', '0', '--cfg-options',
            'ctta_method.optim_wrapper.optimizer.lr=1e30']
    assert test_ctta.main(argv) == EXIT_UNTRUSTED == 3
    s = _results(work)['summary']
    assert (s['steps'], s['skipped_updates']) == (6, 5)
    v = s['verdict']
    assert v['trusted'] is False and v['skipped_updates_share'] == 5 / 6
    assert v['collapse'] == dict(
        kind='non-finite loss',
        began=dict(round=1, domain='fog', image=1), skipped_updates=5,
        last_applied_update=dict(round=1, domain='fog', image=0))
    warning = v['warnings'][0]
    assert warning.startswith(
        'WARNING: the model collapsed: from round 1 fog image 1 on, the loss '
        'or a gradient was non-finite at every step, so every update from '
        'then on was skipped (5 in a row; 5 of 6 updates in all, 83%). The '
        'last update that went through (round 1 fog image 0) left a model '
        'whose loss is non-finite')
    assert 'stayed as it was' not in warning
    assert v['warnings'][-1].startswith(
        'The table is not trustworthy: 83% of the updates were skipped, more '
        'than ctta_cfg.max_skipped_share=0.05; tools/test_ctta.py exits with '
        'status 3')
    with open(osp.join(work, 'ctta_results.md')) as f:
        md = f.read()
    assert all(f'**{w}**' in md for w in v['warnings'])
    # The same run, told to keep 0; its table is the same.
    work0 = str(tmp_path / 'w0')
    argv[argv.index(work)] = work0
    assert test_ctta.main(argv + ['--allow-untrusted']) == 0
    assert _table(work0) == _table(work)
    assert _results(work0)['summary']['verdict']['trusted'] is False


def test_verdict_by_hand():
    """Isolated skips leave the model as it was and stay trusted below the
    share; an mIoU far below the first pass's is named with its pass."""
    records = [dict(round=0, domain='fog', mIoU=30.0, skipped_updates=1),
               dict(round=0, domain='night', mIoU=12.0, skipped_updates=0),
               dict(round=1, domain='fog', mIoU=7.4, skipped_updates=0)]
    first = dict(round=1, domain='fog', image=4)
    last = dict(round=2, domain='fog', image=9)
    v = run_verdict(records, 30, 1, first, None, last, 0.05, 0.25)
    assert v['trusted'] and v['collapse'] is None
    assert v['miou_collapse'] == dict(
        began=dict(round=2, domain='fog'), mIoU=7.4, ratio=0.25,
        first_pass=dict(round=1, domain='fog', mIoU=30.0))
    assert v['warnings'] == [
        'WARNING: 1 of 30 updates (3%) were skipped (non-finite loss or '
        'gradient), the first at round 1 fog image 4; at those steps the '
        'weights were left unchanged, and the updates after them went '
        'through.',
        'WARNING: mIoU collapse: round 2 fog scored 7.40 mIoU, below 25% of '
        "the first pass's 30.00 (round 1 fog): from there on the adapted model "
        'predicts far worse than at the start of the stream.']
    # Both updates skipped, none ever applied: the source model's loss.
    streak = dict(began=dict(round=1, domain='fog', image=0), steps=2)
    v = run_verdict(records[:1], 2, 2, streak['began'], streak, None, 0.05,
                    0.25)
    assert not v['trusted']
    assert 'No update ever went through' in v['warnings'][0]


def test_loop_options_of_the_verdict_are_checked(tmp_path):
    config, ckpt = _stream(tmp_path, 'Source')
    cfg = prepare_ctta_config(config, ckpt, str(tmp_path / 'w'),
                              cfg_options={'ctta_cfg.max_skipped_share': 5})
    with pytest.raises(ValueError, match=r'`max_skipped_share` must be a '
                       r'share in \[0, 1\], got 5'):
        Runner.from_cfg(cfg).test()
