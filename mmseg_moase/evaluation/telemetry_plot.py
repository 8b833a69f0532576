"""One figure of a CTTA run's telemetry along its stream (``ctta_telemetry.png``)."""
from typing import Any, Dict, List, Sequence


def _series(records: Sequence[Dict[str, Any]], key: str) -> List[float]:
    nan = float('nan')
    return [r.get('telemetry', {}).get(key, nan) if key not in r else
            (nan if r[key] is None else r[key]) for r in records]


def plot_telemetry(records: Sequence[Dict[str, Any]], path: str,
                   title: str) -> bool:
    """Plot, per (round, domain) pass: mIoU (scored and student), parameter drift
    per group (student solid, teacher dashed), and, where recorded, the MoASE
    experts' routing weight (solid) and dead-token share (dotted).

    Args:
        records (Sequence[dict]): ``ctta_results.json``'s ``passes``.
        path (str): PNG file to write.
        title (str): Figure title (the method label).

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
    experts = sorted({k.split('.')[2] for k in keys
                      if k.startswith('moase.all.expert')})
    panels = 2 + bool(experts)
    fig, axes = plt.subplots(panels, 1, figsize=(max(7, len(records) * 0.55),
                                                 2.8 * panels), sharex=True)
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

    if experts:
        ax = axes[2]
        for i, e in enumerate(experts):
            color = f'C{i}'
            ax.plot(x, _series(records, f'moase.all.{e}.dag_weight'),
                    color=color, marker='o', label=f'{e} DAG weight')
            ax.plot(x, _series(records, f'moase.all.{e}.dead_share'),
                    color=color, ls=':', label=f'{e} dead tokens')
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel('share')
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
