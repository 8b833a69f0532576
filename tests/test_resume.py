"""Kill a CTTA run mid-stream, --resume it, and get exactly the same table."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import torch

from conftest import ROOT
from ctta_helpers import make_domains, save_source_checkpoint, write_config

TOOL = osp.join(ROOT, 'tools', 'test_ctta.py')


def _cmd(config, ckpt, work, *extra):
    return [sys.executable, TOOL, config, ckpt, '--work-dir', work, '--seed', '3',
            *extra]


def _table(work):
    with open(osp.join(work, 'ctta_results.json')) as f:
        res = json.load(f)
    # Telemetry too: the student's mIoU, loss means and drift (the module
    # statistics of a pass resumed mid-way cover the images after the resume).
    return [(p['round'], p['domain'], p['mIoU'], p['per_class_iou'],
             p['student_mIoU'],
             {k: v for k, v in p['telemetry'].items()
              if k.startswith(('loss.', 'drift.'))})
            for p in res['passes']]


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    data = str(tmp_path / 'data')
    make_domains(data, ('fog', 'night'), num=4)
    # MoASE with stochastic restore on: the resumed run must replay the RNG too.
    config = write_config(
        str(tmp_path / 'cfg.py'), data, 'MoASE', rounds=2,
        extra="ctta_method = dict(teacher='single', loss='soft_ce', "
        'restore_prob=0.05)')
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    env = dict(os.environ, PYTHONPATH=ROOT)

    full = str(tmp_path / 'full')
    subprocess.run(_cmd(config, ckpt, full), check=True, env=env,
                   capture_output=True, timeout=600)

    part = str(tmp_path / 'part')
    state = osp.join(part, 'ctta_state.pth')
    proc = subprocess.Popen(_cmd(config, ckpt, part), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if osp.exists(state):
            try:
                s = torch.load(state, weights_only=True)
            except Exception:  # being replaced right now
                continue
            # Kill somewhere inside the second pass (mid-stream, mid-pass).
            if (s['pass_idx'], s['image_idx']) >= (1, 1):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = (s['pass_idx'], s['image_idx'])
                break
        time.sleep(0.02)
    assert killed_at is not None, 'the run ended before it could be killed'
    s = torch.load(state, weights_only=True)
    assert s['pass_idx'] < 4, 'killed after the stream had finished'

    subprocess.run(_cmd(config, ckpt, part, '--resume'), check=True, env=env,
                   capture_output=True, timeout=600)
    assert _table(part) == _table(full)
    assert len(_table(full)) == 4
    # Final student weights are identical too.
    a = torch.load(osp.join(full, 'ctta_state.pth'), weights_only=True)
    b = torch.load(osp.join(part, 'ctta_state.pth'), weights_only=True)
    for k, v in a['method']['model'].items():
        assert torch.equal(v, b['method']['model'][k]), k
