"""Distributed CTTA: 2 processes (torchrun, gloo on CPU) equal 1 process with the
global batch; identical ranks; a failing rank stops the run instead of hanging.

Every distributed run is a torchrun subprocess with a timeout, so a hang fails
the test instead of blocking the suite.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
from mmengine.config import Config
import torch

from mmseg_moase.apis import build_ctta_runner, prepare_ctta_config

from conftest import ROOT
from ctta_helpers import make_domains, save_source_checkpoint, write_config

DIST_SH = osp.join(ROOT, 'tools', 'dist_test_ctta.sh')
WORKER = osp.join(ROOT, 'tests', 'dist_ctta_worker.py')
# s: a run takes ~30 s on 2 cores, minutes when niced under other jobs.
TIMEOUT = 600
# TENT with SGD: Adam's update is invariant to the gradients' scale, SGD's is not,
# so a wrongly averaged gradient shows in the weights.
TENT_SGD = ("ctta_method = dict(optim_wrapper=dict(optimizer=dict("
            "_delete_=True, type='SGD', lr=0.05, momentum=0.9)))")
# Float rounding: sums over 2 ranks vs over one batch of 2.
WEIGHT_TOL = dict(rtol=1e-5, atol=1e-6)
# With Adam (g / sqrt(v)), an element whose gradient is at rounding level moves
# by up to lr per step in either run: 1e-5 is 5% of one adapter step (2e-4).
ADAM_TOL = dict(rtol=1e-5, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(cmd, cwd, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1', PYTHON=sys.executable, PORT=port)
    cmd = [c.replace('{port}', port) for c in cmd]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'')[-3000:] if isinstance(e.stdout, bytes) \
            else (e.stdout or '')[-3000:]
        pytest.fail(f'distributed run still running after {timeout} s (a hang): '
                    f'{cmd}\n{out}')


def _torchrun(script, *args):
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
            '2', '--master_addr', '127.0.0.1', '--master_port', '{port}', script,
            *args]


def _check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-6000:])


def _table(work):
    with open(osp.join(work, 'ctta_results.json')) as f:
        return [{k: p[k] for k in ('round', 'domain', 'mIoU', 'aAcc', 'mAcc',
                                   'per_class_iou', 'images', 'skipped_updates')}
                for p in json.load(f)['passes']]


def _one_process(config, ckpt, work, batch_size):
    """The stream in this process, batch ``batch_size``: (method state, table)."""
    cfg = prepare_ctta_config(
        config, ckpt, work_dir=work, seed=0,
        cfg_options={'ctta_stream.dataloader.batch_size': batch_size})
    runner = build_ctta_runner(cfg)
    runner.test()
    return runner.test_loop.method.state_dict(), _table(work)


def _setup(tmp_path, method, extra=''):
    data = str(tmp_path / 'data')
    # 3 images per domain, batch 1 on 2 ranks: the last step of every pass has
    # one image, so rank 1 runs a stand-in batch there.
    make_domains(data, ('fog', 'night'), num=3)
    config = write_config(str(tmp_path / f'{method}.py'), data, method,
                          extra=extra)
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    return config, ckpt


@pytest.fixture(scope='module')
def moase_run(tmp_path_factory):
    """One 2-process MoASE stream (rank states saved), then the building-block
    checks in the same process group (one torchrun start for both)."""
    tmp_path = tmp_path_factory.mktemp('moase')
    config, ckpt = _setup(tmp_path, 'MoASE')
    work = str(tmp_path / 'dist')
    proc = _run(_torchrun(WORKER, config, ckpt, work, '0', '--unit-checks'),
                cwd=str(tmp_path))
    return dict(proc=proc, config=config, ckpt=ckpt, work=work, tmp=tmp_path)


def test_building_blocks_equal_one_process(moase_run):
    """Synchronised BatchNorm, weighted gradient averaging (full, partial and
    stand-in shares), the non-finite skip, error agreement, divergence check
    (tests/dist_unit_checks.py)."""
    proc = moase_run['proc']
    _check_ok(proc)
    assert 'DIST UNIT OK rank 0' in proc.stdout
    assert 'DIST UNIT OK rank 1' in proc.stdout


def test_tent_two_processes_equal_one_process_batch_two(tmp_path):
    config, ckpt = _setup(tmp_path, 'TENT', TENT_SGD)
    work = str(tmp_path / 'dist')
    proc = _run(['bash', DIST_SH, config, ckpt, '2', '--work-dir', work,
                 '--seed', '0'], cwd=str(tmp_path))
    _check_ok(proc)
    single, table = _one_process(config, ckpt, str(tmp_path / 'single'), 2)
    assert _table(work) == table  # every pass, every class: equal
    dist_model = torch.load(osp.join(work, 'ctta_state.pth'),
                            weights_only=True)['method']['model']
    source = torch.load(ckpt, weights_only=True)['state_dict']
    moved = max(float((single['model'][k] - source[k]).abs().max())
                for k in source if 'running' not in k and
                source[k].is_floating_point())
    assert moved > 1e-3  # the student did adapt
    for k, v in single['model'].items():  # incl. BatchNorm running statistics
        torch.testing.assert_close(dist_model[k], v, **WEIGHT_TOL,
                                   msg=lambda m: f'{k}: {m}')


def test_moase_two_processes_equal_one_process_and_ranks_identical(moase_run):
    _check_ok(moase_run['proc'])
    config, ckpt, work = moase_run['config'], moase_run['ckpt'], moase_run['work']
    ranks = [torch.load(osp.join(work, f'rank{r}_state.pth'), weights_only=True)
             for r in (0, 1)]
    # Every rank holds bit-identical teacher, student and optimiser state.
    for key in ('teacher', 'model'):
        for k, v in ranks[0][key].items():
            assert torch.equal(v, ranks[1][key][k]), (key, k)
    for s0, s1 in zip(ranks[0]['optim_wrapper']['state'].values(),
                      ranks[1]['optim_wrapper']['state'].values()):
        for name in s0:
            assert torch.equal(s0[name], s1[name]), name

    single, table = _one_process(config, ckpt,
                                 str(moase_run['tmp'] / 'single'), 2)
    assert _table(work) == table
    steps = 4  # 2 passes x ceil(3 / 2)
    base_lr = Config.fromfile(config).ctta_method.get('base_lr', 2e-4)
    total = beyond = 0
    for key in ('model', 'teacher'):
        for k, v in single[key].items():
            d = ranks[0][key][k]
            if k.endswith('attn.in_proj_bias'):
                # The key bias adds one constant to every logit of a softmax
                # row: its true gradient is 0, so Adam (g / sqrt(v)) turns
                # rounding noise into steps of up to lr, in both runs.
                n = v.numel() // 3
                assert float((d[n:2 * n] - v[n:2 * n]).abs().max()) <= \
                    steps * base_lr * 1.01
                v, d = torch.cat([v[:n], v[2 * n:]]), torch.cat([d[:n], d[2 * n:]])
            torch.testing.assert_close(d, v, **ADAM_TOL,
                                       msg=lambda m: f'{key}.{k}: {m}')
            total += v.numel()
            beyond += int(((d - v).abs() > 1e-6).sum())
    assert beyond <= 1e-3 * total, (beyond, total)  # the bulk: rounding only


def test_bad_image_on_one_rank_stops_every_rank(tmp_path):
    data = str(tmp_path / 'data')
    make_domains(data, ('fog', 'night'), num=4)
    # Image 3 of fog is rank 1's share of the second step (batch 1 per rank).
    bad = osp.join(data, 'leftImg8bit', 'fog', 'seq0',
                   'seq0_000003_000019_leftImg8bit.png')
    with open(bad, 'wb') as f:
        f.write(b'not a png')
    config = write_config(str(tmp_path / 'TENT.py'), data, 'TENT')
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    work = str(tmp_path / 'work')
    proc = _run(['bash', DIST_SH, config, ckpt, '2', '--work-dir', work],
                cwd=str(tmp_path), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert f'failed to load image: {bad}' in out, out[-3000:]  # rank 1's own
    # Rank 0 stops with rank 1's error: the domain, the image, mmcv's message.
    assert ('distributed CTTA stopped at image 2 of R1/1 fog because another '
            "rank failed: rank 1: StreamDataError: domain 'fog': loading image "
            '2 of the pass failed (AssertionError: failed to load image') in out
    # Both ranks saved the first step (gathered) before stopping.
    state = torch.load(osp.join(work, 'ctta_state.pth'), weights_only=True)
    assert (state['pass_idx'], state['image_idx']) == (0, 2)
    assert len(state['metric_results'][0]) == 2


def test_a_held_work_dir_stops_every_rank(tmp_path):
    """One lock per job (rank 0 takes it): a work dir another run holds stops
    both ranks with the holder's pid and the work dir, none left waiting."""
    from mmseg_moase.engine.loops.work_dir_lock import WorkDirLock
    data = str(tmp_path / 'data')
    make_domains(data, ('fog', ), num=2)
    config = write_config(str(tmp_path / 'Source.py'), data, 'Source',
                          domains=('fog', ))
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    work = str(tmp_path / 'work')
    os.makedirs(work)
    lock = WorkDirLock(work)
    lock.acquire()
    try:
        proc = _run(['bash', DIST_SH, config, ckpt, '2', '--work-dir', work],
                    cwd=str(tmp_path), timeout=300)
    finally:
        lock.release()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    held = (f'work dir {work} is in use by another CTTA run: pid '
            f'{os.getpid()} on host ')
    assert f'WorkDirLocked: {held}' in out, out[-3000:]  # rank 0's own
    assert ('distributed CTTA stopped before the stream because another rank '
            f'failed: rank 0: WorkDirLocked: {held}') in out  # rank 1's
    assert not osp.exists(osp.join(work, 'ctta_state.pth'))
