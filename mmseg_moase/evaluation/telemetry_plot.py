"""One figure of a CTTA run's telemetry along its stream (``ctta_telemetry.png``)."""
import re
from typing import Any, Dict, List, Mapping, Sequence


def _series(records: Sequence[Dict[str, Any]], key: str) -> List[float]:
    nan = float('nan')
    return [r.get('telemetry', {}).get(key, nan) if key not in r else
            (nan if r[key] is None else r[key]) for r in records]


def _panel_lines(keys: Sequence[str], panel: Mapping[str, Any]
                 ) -> List[tuple]:
    """``(key, series, colour index, style)`` of every key a panel draws."""
    pattern = re.compile(panel['pattern'])
    kinds = panel.get('kinds', {})
    found = {}
    for k in keys:
        m = pattern.match(k)
        if m is None:
            continue
        kind = m.groupdict().get('kind')
        if kinds and kind not in kinds:
            continue
        found[k] = (m.groupdict().get('series', k), kind)
    series = sorted({s for s, _ in found.values()})
    order = list(kinds) or [None]
    lines = []
    for s in series:
        for kind in order:
            for k, (s2, kind2) in found.items():
                if s2 == s and kind2 == kind:
                    lines.append((k, s, series.index(s),
                                  dict(kinds.get(kind, {}))))
    return lines


def plot_telemetry(records: Sequence[Dict[str, Any]], path: str,
                   title: str,
                   panels: Sequence[Mapping[str, Any]] = ()) -> bool:
    """Plot, per (round, domain) pass: mIoU (scored and student), parameter drift
    per group (student solid, teacher dashed), and one panel per entry of
    ``panels`` that matches recorded keys (what a method declares in its
    ``telemetry_panels``).

    Args:
        records (Sequence[dict]): ``ctta_results.json``'s ``passes``.
        path (str): PNG file to write.
        title (str): Figure title (the method label).
        panels (Sequence[dict]): Extra panels, each ``dict(pattern=<regex>,
            kinds=dict(<kind>=dict(label=..., **matplotlib line style)),
            ylabel=..., ylim=(lo, hi))``: one line per telemetry key the
            regex matches; its named groups ``series`` (one colour each, e.g.
            an expert) and ``kind`` (a style of ``kinds``, e.g. its routing
            weight) label the line.

    Returns:
        bool: False if there was nothing to plot (no telemetry recorded).
    """
    if not records or not any(r.get('telemetry') for r in records):
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = sorted({k for r in records for k in r.get('telemetry', {})})
    drift = [k for k in keys if k.startswith('drift.')]
    extra = [(p, lines) for p in panels
             for lines in [_panel_lines(keys, p)] if lines]
    n_axes = 2 + len(extra)
    fig, axes = plt.subplots(n_axes, 1, figsize=(max(7, len(records) * 0.55),
                                                 2.8 * n_axes), sharex=True)
    x = list(range(len(records)))
    labels = [f"R{r['round'] + 1} {r['domain']}" for r in records]

    ax = axes[0]
    ax.plot(x, _series(records, 'mIoU'), marker='o', label='scored mIoU')
    if any('student_mIoU' in r for r in records):
        ax.plot(x, _series(records, 'student_mIoU'), marker='s', ls='--',
                label='student mIoU (not scored)')
    ax.set_ylabel('mIoU (%)')
    ax.legend(fontsize=7)

    ax = axes[1]
    drawn = 0
    groups = sorted({k.split('.', 2)[2] for k in drift})
    for k in drift:
        ys = _series(records, k)
        if all(y == 0 for y in ys):
            continue
        # One colour per group: the student solid, the teacher dashed.
        ax.plot(x, ys, marker='.', ls='--' if '.teacher.' in k else '-',
                color=f'C{groups.index(k.split(".", 2)[2]) % 10}',
                label=k[len('drift.'):])
        drawn += 1
    ax.set_ylabel('drift ||θ-θ0||/||θ0||\n(_abs: ||θ||)')
    if drawn:
        ax.set_yscale('log')
        ax.legend(fontsize=6, ncol=2)
    else:
        ax.text(0.5, 0.5, 'no parameter moved', ha='center', va='center',
                transform=ax.transAxes)

    for ax, (panel, lines) in zip(axes[2:], extra):
        for key, series, i, style in lines:
            label = style.pop('label', None)
            ax.plot(x, _series(records, key), color=f'C{i % 10}',
                    label=f'{series} {label}' if label else series, **style)
        if panel.get('ylim'):
            ax.set_ylim(*panel['ylim'])
        ax.set_ylabel(panel.get('ylabel', ''))
        ax.legend(fontsize=6, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(labels, rotation=45, ha='right', fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
