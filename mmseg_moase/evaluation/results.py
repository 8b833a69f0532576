"""The per-round x per-domain results table, written as the stream goes."""
import csv
import io
import json
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from ..utils.fileio import write_atomically
from .verdict import COLLAPSE_MIOU_RATIO, MAX_SKIPPED_SHARE, run_verdict


def atomic_write_text(path: str, text: str, kept: str = '') -> None:
    """Write ``text`` to ``path`` via a temporary file and an atomic rename
    (:func:`~mmseg_moase.utils.fileio.write_atomically`: a full disk is an
    error naming the file and ``kept``)."""
    data = text.encode('utf-8')
    write_atomically(path, lambda f: f.write(data), len(data),
                     kept or f'The previous {osp.basename(path)} is intact.')


def read_finished_results(path: str) -> Optional[Dict[str, Any]]:
    """The results a run wrote to ``path`` (its ``ctta_results.json``) if
    the run finished: every (round, domain) pass of its stream scored
    (``summary.passes_done == summary.passes_total``, as
    :meth:`CTTAResults.summary` writes them).

    Args:
        path (str): A ``ctta_results.json``.

    Returns:
        dict, optional: The file's content; None when the file does not
        exist or its run stopped before the end of the stream.
    """
    if not osp.isfile(path):
        return None
    with open(path) as f:
        results = json.load(f)
    summary = results['summary']
    return results if summary['passes_done'] == summary['passes_total'] \
        else None


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
        max_skipped_share (float): The verdict's limit on skipped updates
            (:func:`~.verdict.run_verdict`).
        collapse_miou_ratio (float): The verdict's mIoU collapse ratio.
    """

    def __init__(self, method: str, domains: Sequence[str], rounds: int,
                 out_dir: str, name: str = 'ctta_results',
                 max_skipped_share: float = MAX_SKIPPED_SHARE,
                 collapse_miou_ratio: float = COLLAPSE_MIOU_RATIO) -> None:
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
        self.max_skipped_share = max_skipped_share
        self.collapse_miou_ratio = collapse_miou_ratio
        #: Method steps so far, where skipped updates began, the run of
        #: skipped updates the stream is in (None after an applied one) and
        #: the last step whose update was not skipped (:meth:`record_step`).
        self.steps = 0
        self.first_skip: Optional[Dict[str, Any]] = None
        self.skip_streak: Optional[Dict[str, Any]] = None
        self.last_applied: Optional[Dict[str, Any]] = None

    def record_step(self, skipped: bool, where: Dict[str, Any]) -> None:
        """Count one method step at ``where`` (round, domain, image) and
        whether its update was skipped."""
        self.steps += 1
        if not skipped:
            self.skip_streak, self.last_applied = None, dict(where)
            return
        if self.first_skip is None:
            self.first_skip = dict(where)
        if self.skip_streak is None:
            self.skip_streak = dict(began=dict(where), steps=0)
        self.skip_streak['steps'] += 1

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
        skipped = sum(r['skipped_updates'] for r in self.records)
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
            skipped_updates=skipped,
            steps=self.steps,
            skipped_updates_share=skipped / self.steps if self.steps else 0.0,
            first_skipped_update=self.first_skip,
            verdict=self.verdict(),
            **({'student_mean_mIoU': _nanmean(
                [r.get('student_mIoU') for r in self.records])}
               if any('student_mIoU' in r for r in self.records) else {}))

    def outcome(self) -> Dict[str, Any]:
        """What a run returns: ``mIoU`` (mean over the passes) and
        ``trusted`` (the verdict's)."""
        return dict(mIoU=self.overall_mean(), trusted=self.verdict()['trusted'])

    def verdict(self) -> Dict[str, Any]:
        """Whether the table is trustworthy, collapses and their warnings
        (:func:`~.verdict.run_verdict`)."""
        # The skipped updates of the passes scored so far (as the summary).
        skipped = sum(r['skipped_updates'] for r in self.records)
        return run_verdict(self.records, self.steps, skipped, self.first_skip,
                           self.skip_streak, self.last_applied,
                           self.max_skipped_share, self.collapse_miou_ratio)

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
        for warning in self.verdict()['warnings']:
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

    def write(self, kept: str = '') -> None:
        """Rewrite the three files atomically; ``kept``: what a failed write
        (a full disk) leaves intact, for its message."""
        os.makedirs(self.out_dir, exist_ok=True)
        base = osp.join(self.out_dir, self.name)
        payload = dict(summary=self.summary(), passes=self.records,
                       provenance=self.provenance, notes=self.notes)
        # Strict JSON: NaN (an mIoU of no class) and inf are written as null.
        atomic_write_text(base + '.json',
                          json.dumps(_nan_to_none(payload), indent=2,
                                     allow_nan=False), kept)
        atomic_write_text(base + '.csv', self.csv_text(), kept)
        atomic_write_text(base + '.md', self.markdown(), kept)

    def state_dict(self) -> Dict[str, Any]:
        return dict(records=json.dumps(self.records), notes=list(self.notes),
                    steps=self.steps,
                    first_skip=json.dumps(self.first_skip),
                    skip_streak=json.dumps(self.skip_streak),
                    last_applied=json.dumps(self.last_applied))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.records = json.loads(state['records'])
        self.notes = list(state.get('notes', []))
        self.steps = int(state.get('steps', 0))
        self.first_skip = json.loads(state.get('first_skip', 'null'))
        self.skip_streak = json.loads(state.get('skip_streak', 'null'))
        self.last_applied = json.loads(state.get('last_applied', 'null'))
