"""tools/gpu_check.py in its CPU/CI mode (``--device cpu --small``)."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from tools import gpu_check

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_gpu_check_cpu_small(tmp_path):
    """Every method gets a row with finite images/s; the device is named; the
    agreement and the markdown table are there. ``--no-memory`` keeps it
    short (the memory children are ``benchmark_ctta``'s own, tested there)."""
    out = tmp_path / 'gpu_check'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'gpu_check.py'), '--device',
         'cpu', '--small', '--threads', '1', '--no-memory', '--out', str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / 'results.json').read_text())
    assert report['device_name'] and report['device'] == 'cpu'
    assert report['stages']['tests']['status'] == 'skipped'
    assert report['stages']['agreement']['status'] in ('passed', 'skipped')
    bm = report['stages']['benchmark']
    assert bm['status'] == 'passed' and list(bm['precisions']) == ['fp32']
    rows = {r['label']: r for r in bm['precisions']['fp32']['rows']}
    expected = {v.label for v in gpu_check.check_variants('b0')}
    assert set(rows) == expected
    assert {'Source', 'CoTTA', 'MoASE teacher=cotta', 'MoASE teacher=single',
            'MoASE-split', 'ViDA'} <= expected
    for r in rows.values():
        assert math.isfinite(r['images_per_s']) and r['images_per_s'] > 0
    assert rows['Source']['time_ratio'] == 1.0
    md = (out / 'results.md').read_text()
    assert report['device_name'] in md
    assert '| Method | views | fp32 images/s' in md
    assert all(f'| {label} |' in md for label in expected)


def test_gpu_check_options():
    """Unusable options are refused with the option named."""
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--device', 'cpu', '--repeats', '0'])
    args = gpu_check.parse_args(['--device', 'cpu', '--small'])
    assert (args.backbone, args.size, args.images, args.repeats) == (
        'b0', [64, 128], 1, 1)
    assert gpu_check.precisions(args)[0] == ['fp32']
