"""The CPU allocator mode of the CTTA loop: glibc keeps freed memory for reuse.

Each case runs in a fresh interpreter (the setting is process-wide). A 256 MiB
tensor is allocated and freed eight times: with glibc's default every free
returns its pages (the RSS falls back) and every allocation faults them in
again; with ``keep`` the RSS stays up after a free and the allocations reuse the
freed pages: the peak RSS stays within three tensors' worth (a small object may
take the start of a freed block, so a tensor may now and then go after it).
"""
import json
import os.path as osp
import platform
import subprocess
import sys

import pytest

from mmseg_moase.engine.loops.ctta_loop import CTTALoop
from mmseg_moase.utils.cpu_malloc import set_cpu_malloc

#: The repository: the child imports ``tools.bench_utils`` from it.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CHILD = r'''
import json, sys
import torch
from tools.bench_utils import proc_status_kb
from mmseg_moase.utils.cpu_malloc import set_cpu_malloc
applied = set_cpu_malloc(sys.argv[1])
base = proc_status_kb('VmRSS')
after_free, peaks = [], []
for _ in range(8):
    x = torch.ones(64 * 1024 * 1024)  # 256 MiB
    del x
    after_free.append(proc_status_kb('VmRSS'))
    peaks.append(proc_status_kb('VmHWM'))
print(json.dumps(dict(applied=applied, base=base, after_free=after_free,
                      peaks=peaks)))
'''

needs_glibc = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc',
                                 reason='glibc only')


def child(mode):
    out = subprocess.run([sys.executable, '-c', CHILD, mode], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


@needs_glibc
def test_keep_holds_freed_memory_and_reuses_it():
    r = child('keep')
    assert r['applied'] is True
    mib = 1024  # KiB
    assert min(r['after_free']) - r['base'] > 200 * mib  # kept after a free
    # Reused: eight 256 MiB tensors in a row fit in three blocks' pages (a
    # small object may take the start of a freed block, so a tensor may go
    # after it now and then); without reuse the peak would climb 256 MiB a time.
    assert r['peaks'][-1] - r['base'] < (3 * 256 + 64) * mib


@needs_glibc
def test_default_returns_freed_memory():
    r = child('default')
    assert r['applied'] is False
    assert max(r['after_free']) - r['base'] < 50 * 1024


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match='cpu_malloc'):
        set_cpu_malloc('cache')
    with pytest.raises(ValueError, match=r'ctta_cfg.*cpu_malloc'):
        CTTALoop(runner=None, dataloader={}, evaluator={}, method={},
                 domains=[], cpu_malloc='cache')
