"""The synthetic benchmark's report: the comparison table (Markdown + JSON),
its telemetry columns and the plot of mIoU along the stream."""
import json
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

#: The headroom row's name (not a method; see ``.oracle``).
ORACLE = 'Oracle'


def host_line(res: Dict) -> str:
    """The machine a run was measured on, from its provenance."""
    h = (res.get('provenance') or {}).get('host')
    if not h:
        return 'not recorded'
    return (f"{h.get('cpu') or h.get('machine')} ({h.get('torch_cpu_capability')}"
            f", {h.get('torch_threads')} thread(s))")


def aggregate(runs: Dict[str, List[Dict]], out_dir: str,
              source_summary: Dict, out_name: str = 'comparison') -> Dict:
    """Comparison table (Markdown + JSON) and the plot; returns the JSON dict."""
    methods = list(runs)
    first = runs[methods[0]][0]
    domains = first['summary']['domains']
    n_rounds = first['summary']['rounds']
    table = {}
    for m, seed_runs in runs.items():
        per_pass = {}
        for res in seed_runs:
            for p in res['passes']:
                per_pass.setdefault((p['round'], p['domain']), []).append(p['mIoU'])
        means = [r['summary']['mean_mIoU'] for r in seed_runs]
        secs = sum(r['summary']['seconds'] for r in seed_runs)
        imgs = sum(r['summary']['images'] for r in seed_runs)
        students = [r['summary'].get('student_mean_mIoU') for r in seed_runs]
        students = [x for x in students if x is not None]
        table[m] = dict(
            student_mean_mIoU=statistics.mean(students) if students else None,
            telemetry=telemetry_summary(seed_runs[0]),
            seeds=len(seed_runs),
            passes={f'{r + 1}/{d}': dict(mean=statistics.mean(v),
                                         std=statistics.pstdev(v), runs=v)
                    for (r, d), v in sorted(per_pass.items())},
            mean_mIoU=statistics.mean(means),
            mean_mIoU_std=statistics.pstdev(means),
            mean_mIoU_runs=means,
            seconds_per_image=secs / max(imgs, 1),
            skipped_updates=sum(r['summary']['skipped_updates']
                                for r in seed_runs))
    src_time = table.get('Source', {}).get('seconds_per_image')
    lines = ['| Method | Seeds | Round | ' + ' | '.join(domains) +
             ' | Round mean |', '|' + '---|' * (len(domains) + 4)]
    for m in methods:
        t = table[m]
        for r in range(n_rounds):
            cells = []
            vals = []
            for d in domains:
                e = t['passes'].get(f'{r + 1}/{d}')
                vals.append(e['mean'])
                cells.append(f"{e['mean']:.2f}" + (f" ± {e['std']:.2f}"
                                                   if t['seeds'] > 1 else ''))
            lines.append(f"| {m} | {t['seeds']} | {r + 1} | " + ' | '.join(cells) +
                         f' | {statistics.mean(vals):.2f} |')
    lines.append('')
    lines.append('| Method | Mean mIoU (all passes) | s / image | x Source time |')
    lines.append('|---|---|---|---|')
    for m in methods:
        t = table[m]
        spread = f" ± {t['mean_mIoU_std']:.2f}" if t['seeds'] > 1 else ''
        ratio = f"{t['seconds_per_image'] / src_time:.1f}x" if src_time else '-'
        lines.append(f"| {m} | {t['mean_mIoU']:.2f}{spread} | "
                     f"{t['seconds_per_image']:.3f} | {ratio} |")
    lines.append('')
    warm = source_summary.get('vida_warmup')
    lines.append(f"Source model: clean val mIoU {source_summary['clean_val_mIoU']:.2f}"
                 + (f"; ViDA's warmed-up start: {warm['clean_val_mIoU']:.2f}"
                    if warm else '') + '; ± is the population std over seeds.')
    if ORACLE in table:
        fine = source_summary.get('oracle')
        how = (f"{fine['oracle_data']['num_per_condition']} other labelled "
               "scenes per condition (none of the stream's; "
               f"{fine['iterations']} iterations, clean val mIoU "
               f"{fine['clean_val_mIoU']:.2f})" if fine else
               "other labelled scenes of each condition (none of the stream's)")
        lines.append('Oracle is not an adaptation method: the source model '
                     f'fine-tuned on {how}, an upper bound of what adapting '
                     'could gain.')
    hosts = sorted({host_line(r) for seed_runs in runs.values()
                    for r in seed_runs})
    lines.append(f"Measured on: {'; '.join(hosts)}. Another kind of CPU can give "
                 'other floats (the source training too, hence every row): '
                 'compare tables measured on one machine.')
    lines += ['', telemetry_table(table)]
    md = '\n'.join(lines) + '\n'
    payload = dict(domains=domains, rounds=n_rounds, methods=table,
                   source_model=source_summary, hosts=hosts)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, f'{out_name}.md'), 'w') as f:
        f.write(md)
    with open(osp.join(out_dir, f'{out_name}.json'), 'w') as f:
        json.dump(payload, f, indent=2)
    plot = 'miou_stream' if out_name == 'comparison' else f'{out_name}_stream'
    plot_stream(table, domains, n_rounds, osp.join(out_dir, f'{plot}.png'),
                source_summary.get('clean_val_mIoU'))
    return payload


#: Telemetry columns of the comparison: (heading, key in a pass record).
TELEMETRY_COLUMNS = (
    ('drift student backbone', 'drift.student.backbone'),
    ('drift teacher backbone', 'drift.teacher.backbone'),
    ('student experts ‖θ‖ (zero-start)', 'drift.student.experts_abs'),
    ('teacher experts ‖θ‖ (zero-start)', 'drift.teacher.experts_abs'),
    ('plain-view gate share', 'gate.plain_share'),
    ('pseudo-label = source', 'pseudo_label.source_agreement'),
    ('drift student ViDA adapters', 'drift.student.vida'),
    ('HKA high-rank share (run mean)', 'run_mean.hka.high_rank_share'),
)


def telemetry_summary(run: Dict) -> Dict:
    """The last pass's telemetry of one run, plus means over the run of the
    MoASE experts' dead-token share and DAG weight and of ViDA's HKA
    high-rank share."""
    passes = run.get('passes', [])
    if not passes or 'telemetry' not in passes[-1]:
        return {}
    last = dict(passes[-1]['telemetry'])
    experts = sorted({k.split('.')[2] for p in passes for k in p['telemetry']
                      if k.startswith('moase.all.expert')})
    for e in experts:
        for stat in ('dead_share', 'dag_weight', 'k'):
            vals = [p['telemetry'].get(f'moase.all.{e}.{stat}') for p in passes]
            vals = [v for v in vals if v is not None]
            if vals:
                last[f'run_mean.{e}.{stat}'] = statistics.mean(vals)
    hka = [p['telemetry'].get('hka.high_rank_share') for p in passes]
    hka = [v for v in hka if v is not None]
    if hka:
        last['run_mean.hka.high_rank_share'] = statistics.mean(hka)
    return last


def telemetry_table(table: Dict) -> str:
    """Markdown: the telemetry columns per method (seed of the first run)."""
    head = ['Method', 'student mIoU (not scored)'] + [
        h for h, _ in TELEMETRY_COLUMNS] + ['experts: dead share / DAG weight']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for m, t in table.items():
        tel = t.get('telemetry') or {}
        st = t.get('student_mean_mIoU')
        cells = [m, '-' if st is None else f'{st:.2f}']
        for _, key in TELEMETRY_COLUMNS:
            v = tel.get(key)
            cells.append('-' if v is None else f'{v:.3g}')
        experts = sorted({k.split('.')[1] for k in tel
                          if k.startswith('run_mean.expert')})
        cells.append(' '.join(
            f"{tel[f'run_mean.{e}.dead_share']:.2f}/"
            f"{tel[f'run_mean.{e}.dag_weight']:.2f}" for e in experts) or '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return ('Telemetry (drift at the end of the stream; gate and agreement of '
            'the last pass; expert shares averaged over the run):\n\n' +
            '\n'.join(lines) + '\n')


def plot_stream(table: Dict, domains: Sequence[str], n_rounds: int, path: str,
                clean: Optional[float] = None) -> None:
    """mIoU of every pass along the stream, one line per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [f'{r + 1}/{d}' for r in range(n_rounds) for d in domains]
    x = list(range(len(keys)))
    fig, ax = plt.subplots(figsize=(max(6, len(keys) * 0.7) + 2.5, 4))
    for m, t in table.items():
        ys = [t['passes'][k]['mean'] for k in keys]
        ax.plot(x, ys, marker='o', ls='--' if m == ORACLE else '-',
                label=f"{m} ({t['mean_mIoU']:.1f})")
        if t['seeds'] > 1:
            lo = [min(t['passes'][k]['runs']) for k in keys]
            hi = [max(t['passes'][k]['runs']) for k in keys]
            ax.fill_between(x, lo, hi, alpha=0.2)
    if clean is not None:
        ax.axhline(clean, color='grey', ls='--', lw=1,
                   label=f'source on clean val ({clean:.1f})')
    for r in range(1, n_rounds):
        ax.axvline(r * len(domains) - 0.5, color='k', lw=0.5, alpha=0.3)
    ax.set_xticks(x)
    ax.set_xticklabels([f'R{k.split("/")[0]} {k.split("/")[1]}' for k in keys],
                       rotation=45, ha='right')
    ax.set_ylabel('mIoU (%)')
    ax.set_title('Synthetic city -> weather: mIoU along the continual stream')
    # Outside the axes: with eight rows a legend inside hides a pass.
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
