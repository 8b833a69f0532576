"""``tools/compare_cost.py``: a tree against itself flags nothing, an injected
slowdown is flagged, and the report's rules on made-up figures.

The end-to-end runs measure the synthetic stream's Source and CoTTA configs at
a small size; ``--base HEAD --new HEAD`` compares two exports of one commit, so
the result does not depend on what the working tree holds. Only sanity bounds
on the measured ratios, no timing assertions.
"""
import json
import os.path as osp

import pytest

from conftest import ROOT, config_path
from tools import compare_cost
from tools.compare_cost import CompareError, build_row, format_table, main

CONFIGS = [config_path('synthetic', f'{m}_mit-b0_3rounds_synthetic-'
                       'city2weather-128x256.py') for m in ('source', 'cotta')]
TINY = ['--size', '64', '128', '--images', '2', '--repeats', '3', '--warmup',
        '1', '--threads', '1', '--no-memory']


def _run(tmp_path, *extra: str) -> tuple:
    out = tmp_path / 'compare.json'
    rc = main(['--base', 'HEAD', *CONFIGS, *TINY, '--out', str(out), *extra])
    with open(out) as f:
        return rc, json.load(f)


# ------------------------------------------------------------ end to end
def test_a_tree_against_itself_flags_nothing(tmp_path, capsys):
    rc, report = _run(tmp_path, '--new', 'HEAD', '--fail-on-flag')
    assert rc == 0
    assert report['flagged'] == []
    rows = {r['label']: r for r in report['rows']}
    assert list(rows) == ['Source', 'CoTTA']
    for row in rows.values():
        assert row['status'] == 'both' and row['flags'] == []
        assert len(row['time_ratio']['paired']) == 3
        for key in ('time_ratio', 'cpu_time_ratio'):
            assert 0.5 <= row[key]['median'] <= 2.0, (row['label'], key)
    assert rows['CoTTA']['base']['views'] == rows['CoTTA']['new']['views'] == 6
    # Both sides are exports of HEAD, each measured with its own package.
    packages = [report['sides'][t]['package'] for t in ('base', 'new')]
    assert packages[0] != packages[1]
    assert not any(p.startswith(osp.join(ROOT, 'mmseg_moase')) for p in packages)
    out = capsys.readouterr().out
    assert '| Source |' in out and 'Nothing flagged.' in out


def test_an_injected_slowdown_is_flagged(tmp_path, capsys):
    # New: the working tree (the default), each pass stretched 3-fold.
    rc, report = _run(tmp_path, '--inject-slowdown', '3', '--fail-on-flag')
    assert rc == 1
    assert report['flagged'] == ['Source', 'CoTTA']
    assert report['sides']['new']['package'] == osp.join(
        ROOT, 'mmseg_moase', '__init__.py')
    for row in report['rows']:
        # The injected spin is counted in CPU time exactly; wall-clock also
        # counts other processes' share of the cores: a looser sanity bound.
        assert row['cpu_time_ratio']['median'] >= 2.0
        assert 'CPU time' in row['flags']
        assert row['time_ratio']['median'] >= 1.5
    assert 'FLAG ' in capsys.readouterr().out


# ------------------------------------------------------------ options
def test_an_unknown_base_revision_is_named(tmp_path):
    with pytest.raises(CompareError, match="--base no-such-rev-1a2b: git "
                       "cannot resolve 'no-such-rev-1a2b'"):
        main(['--base', 'no-such-rev-1a2b', *CONFIGS,
              '--out', str(tmp_path / 'x.json')])


def test_a_config_in_neither_tree_is_named(tmp_path):
    with pytest.raises(CompareError, match='CONFIG configs/no_such.py: no such '
                       'file in the compared trees'):
        main(['--base', 'HEAD', 'configs/no_such.py',
              '--out', str(tmp_path / 'x.json')])


def test_base_is_required(capsys):
    with pytest.raises(SystemExit) as e:
        main(CONFIGS)
    assert e.value.code == 2
    assert '--base REV is required' in capsys.readouterr().err


def test_help_lists_the_measurement_options_but_not_the_test_option(capsys):
    with pytest.raises(SystemExit) as e:
        compare_cost.parse_args(['--help'])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert '--base' in text and '--fail-on-flag' in text
    assert '--repeats' in text and '--no-memory' in text
    assert 'inject' not in text


def test_measurement_options_keep_the_benchmark_defaults():
    own, args = compare_cost.parse_args(['--base', 'HEAD'])
    ref = compare_cost.bench.parse_args([])
    assert own.threshold == 1.10 and not own.fail_on_flag
    assert own.inject_slowdown == 1.0
    for key in ('images', 'repeats', 'warmup', 'size', 'configs', 'threads',
                'no_memory', 'cpu_malloc', 'precision'):
        assert getattr(args, key) == getattr(ref, key), key


# ------------------------------------------------------------ the report
def _row(base, new, threshold=1.10, memory=None, present=('base', 'new')):
    wall = dict(base=base, new=new)
    return build_row('M', list(present), wall, dict(wall), memory or {},
                     dict(base=1, new=1), threshold)


def test_flag_needs_every_repeat_above_the_threshold():
    # Median 1.3 but one repeat only 5% slower: within the spread, no flag.
    row = _row([1.0, 1.0, 1.0], [1.3, 1.05, 1.4])
    assert row['time_ratio']['median'] == pytest.approx(1.3)
    assert (row['time_ratio']['min'], row['time_ratio']['max']) == \
        pytest.approx((1.05, 1.4))
    assert row['flags'] == []
    row = _row([1.0, 2.0, 1.0], [1.2, 2.3, 1.3])
    assert row['time_ratio']['min'] == pytest.approx(1.15)
    assert row['flags'] == ['time', 'CPU time']
    assert _row([1.0, 1.0], [1.2, 1.3], threshold=1.25)['flags'] == []
    # Faster is never flagged.
    assert _row([1.0, 1.0], [0.5, 0.6])['flags'] == []


def test_memory_ratio_is_flagged_above_the_threshold():
    mem = dict(base=dict(peak_kb=100 * 1024), new=dict(peak_kb=120 * 1024))
    row = _row([1.0], [1.0], memory=mem)
    assert row['memory_ratio'] == pytest.approx(1.2)
    assert row['flags'] == ['memory']
    assert '100/120' in format_table([row])


def test_a_variant_in_one_tree_only_is_reported_as_such():
    row = build_row('MoASE teacher=x', ['new'], dict(new=[0.5, 0.7]),
                    dict(new=[0.4, 0.6]), {}, dict(new=14), 1.10)
    assert row['status'] == 'only in new' and row['flags'] == []
    assert 'base' not in row and 'time_ratio' not in row
    assert row['new']['seconds_per_image']['median'] == pytest.approx(0.6)
    line = format_table([row]).splitlines()[-1]
    assert line.startswith('| MoASE teacher=x | - | 0.600 | - |')
    assert line.endswith('| only in new |')
