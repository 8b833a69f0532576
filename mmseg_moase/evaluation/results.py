"""The per-round x per-domain results table, written as the stream goes."""
import csv
import io
import json
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and an atomic rename."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def _fmt(x: Optional[float]) -> str:
    return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) \
        else f'{x:.2f}'


def _nan_to_none(x: Any) -> Any:
    """``x`` with every non-finite float (NaN, an infinite loss mean; in dicts
    and lists) replaced by None: strict JSON has neither."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float('nan')


class CTTAResults:
    """Accumulates one record per (round, domain) pass and writes the tables.

    Files (under ``out_dir``, prefix ``name``): ``.json`` (every pass: mIoU,
    per-class IoU, image count, seconds, skipped updates; plus the summary),
    ``.csv`` (one row per pass) and ``.md`` (rows = method/round, columns =
    domains + mean, as CTTA papers print it). Rewritten atomically after each pass.

    Args:
        method (str): Method label for the table rows.
        domains (Sequence[str]): Domain names in stream order.
        rounds (int): Number of rounds.
        out_dir (str): Where the files go.
        name (str): File name prefix. Defaults to ``'ctta_results'``.
    """

    def __init__(self, method: str, domains: Sequence[str], rounds: int,
                 out_dir: str, name: str = 'ctta_results') -> None:
        self.method = method
        self.domains = list(domains)
        self.rounds = rounds
        self.out_dir = out_dir
        self.name = name
        self.records: List[Dict[str, Any]] = []
        #: Where the results come from (config, checkpoint sha256, seed...).
        self.provenance: Dict[str, Any] = {}
        #: Warnings about the run itself (e.g. a forced resume).
        self.notes: List[str] = []
        #: Method steps so far, and where skipped updates began.
        self.steps = 0
        self.first_skip: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------- summary
    def miou(self, round_idx: int, domain: str) -> Optional[float]:
        return self.value(round_idx, domain, 'mIoU')

    def value(self, round_idx: int, domain: str, key: str) -> Optional[float]:
        """``key`` of the (round, domain) pass's record; None if not run."""
        for r in self.records:
            if r['round'] == round_idx and r['domain'] == domain:
                return r.get(key)
        return None

    def round_mean(self, round_idx: int) -> float:
        return _nanmean([r['mIoU'] for r in self.records
                         if r['round'] == round_idx])

    def overall_mean(self) -> float:
        """Mean of the pass mIoUs (what CTTA papers report as the mean)."""
        return _nanmean([r['mIoU'] for r in self.records])

    def summary(self) -> Dict[str, Any]:
        return dict(
            method=self.method,
            domains=self.domains,
            rounds=self.rounds,
            passes_done=len(self.records),
            passes_total=self.rounds * len(self.domains),
            round_mean={str(r + 1): self.round_mean(r)
                        for r in range(self.rounds)
                        if any(x['round'] == r for x in self.records)},
            mean_mIoU=self.overall_mean(),
            images=sum(r['images'] for r in self.records),
            seconds=sum(r['seconds'] for r in self.records),
            skipped_updates=sum(r['skipped_updates'] for r in self.records),
            steps=self.steps,
            skipped_updates_share=(sum(r['skipped_updates']
                                       for r in self.records) / self.steps
                                   if self.steps else 0.0),
            first_skipped_update=self.first_skip,
            **({'student_mean_mIoU': _nanmean(
                [r.get('student_mIoU') for r in self.records])}
               if any('student_mIoU' in r for r in self.records) else {}))

    def skipped_warning(self) -> Optional[str]:
        """A warning when updates were skipped (non-finite loss or gradient):
        how many, their share and where they began; None otherwise."""
        s = self.summary()
        n = s['skipped_updates']
        if not n:
            return None
        where = s['first_skipped_update'] or {}
        return (f'WARNING: {n} of {s["steps"]} updates '
                f'({100 * s["skipped_updates_share"]:.0f}%) were skipped '
                '(non-finite loss or gradient: the model stayed as it was), '
                f"from round {where.get('round')} {where.get('domain')} image "
                f"{where.get('image')} on; the table scores a model that "
                'stopped adapting there (check the learning rate).')

    def summary_line(self) -> str:
        s = self.summary()
        rounds = ', '.join(f'R{k} {_fmt(v)}' for k, v in s['round_mean'].items())
        ips = s['images'] / s['seconds'] if s['seconds'] else float('nan')
        return (f'CTTA {self.method}: mean mIoU {_fmt(s["mean_mIoU"])} over '
                f'{s["passes_done"]}/{s["passes_total"]} passes ({rounds}); '
                f'{s["images"]} images in {s["seconds"]:.1f}s '
                f'({ips:.2f} img/s), {s["skipped_updates"]} skipped updates')

    # ----------------------------------------------------------------- I/O
    def add(self, record: Dict[str, Any]) -> None:
        self.records.append(record)
        self.write()

    def markdown(self) -> str:
        head = ['Method', 'Round'] + self.domains + ['Mean']
        lines = ['| ' + ' | '.join(head) + ' |',
                 '|' + '---|' * len(head)]
        has_student = any('student_mIoU' in x for x in self.records)
        rows = [(self.method, 'mIoU')]
        if has_student:  # the adapted model itself, beside the scored teacher
            rows.append((f'{self.method} (student, not scored)', 'student_mIoU'))
        for label, key in rows:
            for r in range(self.rounds):
                if not any(x['round'] == r for x in self.records):
                    continue
                values = [self.value(r, d, key) for d in self.domains]
                cells = [label, str(r + 1)] + [_fmt(v) for v in values]
                cells.append(_fmt(_nanmean(values)))
                lines.append('| ' + ' | '.join(cells) + ' |')
        lines.append(f'\nMean over all passes: {_fmt(self.overall_mean())} mIoU')
        label = self.provenance.get('method_label')
        if label and label != self.method:
            lines.append(f'Method: `{label}`')
        warning = self.skipped_warning()
        if warning:
            lines.append(f'\n**{warning}**')
        for note in self.notes:
            lines.append(f'\nNote: {note}')
        if has_student:
            student = _nanmean([x.get('student_mIoU') for x in self.records])
            lines.append(f'Student (not scored) mean: {_fmt(student)} mIoU')
        return '\n'.join(lines) + '\n'

    def csv_text(self) -> str:
        buf = io.StringIO()
        cols = ['method', 'round', 'domain', 'mIoU', 'student_mIoU', 'aAcc',
                'mAcc', 'images', 'seconds', 'skipped_updates']
        classes, telemetry = [], []
        for r in self.records:
            classes += [k for k in r.get('per_class_iou', {}) if k not in classes]
            telemetry += [k for k in r.get('telemetry', {}) if k not in telemetry]
        writer = csv.writer(buf)
        writer.writerow(cols + [f'IoU.{c}' for c in classes] + telemetry)
        for r in self.records:
            row = [self.method, r['round'] + 1, r['domain']]
            row += [r.get(k) for k in cols[3:]]
            row += [r.get('per_class_iou', {}).get(c) for c in classes]
            row += [r.get('telemetry', {}).get(k) for k in telemetry]
            writer.writerow(row)
        return buf.getvalue()

    def write(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        base = osp.join(self.out_dir, self.name)
        payload = dict(summary=self.summary(), passes=self.records,
                       provenance=self.provenance, notes=self.notes)
        # Strict JSON: NaN (an mIoU of no class) and inf are written as null.
        atomic_write_text(base + '.json',
                          json.dumps(_nan_to_none(payload), indent=2,
                                     allow_nan=False))
        atomic_write_text(base + '.csv', self.csv_text())
        atomic_write_text(base + '.md', self.markdown())

    def state_dict(self) -> Dict[str, Any]:
        return dict(records=json.dumps(self.records), notes=list(self.notes),
                    steps=self.steps,
                    first_skip=json.dumps(self.first_skip))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.records = json.loads(state['records'])
        self.notes = list(state.get('notes', []))
        self.steps = int(state.get('steps', 0))
        self.first_skip = json.loads(state.get('first_skip', 'null'))
