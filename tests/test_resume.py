"""Kill a CTTA run mid-stream, --resume it, and get exactly the same table."""
import os
import os.path as osp
import signal
import subprocess
import sys

import torch

from conftest import ROOT
from ctta_helpers import (make_domains, resume_table, save_source_checkpoint,
                          write_config)
from step_signal_hook import hook_env, write_signal_config

TOOL = osp.join(ROOT, 'tools', 'test_ctta.py')


def _cmd(config, ckpt, work, *extra):
    return [sys.executable, TOOL, config, ckpt, '--work-dir', work, '--seed', '3',
            *extra]


# Telemetry too: the student's mIoU, loss means and drift.
_table = resume_table


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

    # Killed inside the second pass (mid-stream, mid-pass): SIGKILL at the
    # end of step 7 of 16 (pass 1, its third image), before that step's state
    # is saved. The run emits the event itself (a hook), whatever its speed.
    part = str(tmp_path / 'part')
    state = osp.join(part, 'ctta_state.pth')
    kill_cfg = write_signal_config(str(tmp_path / 'kill.py'), config, step=7)
    proc = subprocess.run(_cmd(kill_cfg, ckpt, part), env=hook_env(env),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # The state of step 6 (the last saved) and the table of the first pass.
    s = torch.load(state, weights_only=True)
    assert (s['pass_idx'], s['image_idx']) == (1, 2)
    assert len(_table(part)) == 1

    subprocess.run(_cmd(config, ckpt, part, '--resume'), check=True, env=env,
                   capture_output=True, timeout=600)
    assert _table(part) == _table(full)
    assert len(_table(full)) == 4
    # Final student weights are identical too.
    a = torch.load(osp.join(full, 'ctta_state.pth'), weights_only=True)
    b = torch.load(osp.join(part, 'ctta_state.pth'), weights_only=True)
    for k, v in a['method']['model'].items():
        assert torch.equal(v, b['method']['model'][k]), k
