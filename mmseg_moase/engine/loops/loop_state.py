"""What the CTTA loop saves to resume a stream, and how it takes it back.

:class:`ResumeMixin` holds :class:`~.ctta_loop.CTTALoop`'s state file: what a
save writes (method, scored results so far, random state, telemetry, the
settings fingerprint) and the checks of a resume (version, stream, settings;
``--resume --force``); :func:`~.run_state.provenance` of the results.
"""
import os.path as osp
import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, is_main_process
from mmengine.logging import print_log

from ...registry import METHODS
from ...utils.dist import is_distributed, raise_rank_errors, rank_errors
from .run_state import (fingerprint_diff, load_state_file, method_label,
                        provenance, run_fingerprint, save_state_file)

STATE_FILE = 'ctta_state.pth'
STATE_VERSION = 1


def rng_state() -> Dict[str, Any]:
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                 python=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gathered_results(evaluator) -> List[list]:
    """Every metric's per-image results so far, from all ranks (every rank
    must call it on several processes)."""
    results = [list(m.results) for m in evaluator.metrics]
    if is_distributed():
        parts = all_gather_object(results)
        results = [[r for part in parts for r in part[k]]
                   for k in range(len(results))]
    return results


def restore_results(evaluator, saved: Sequence[list]) -> None:
    """Put results saved by :func:`gathered_results` back: rank 0 takes them
    all (the evaluator gathers them to rank 0 at the pass end anyway)."""
    for metric, results in zip(evaluator.metrics, saved):
        metric.results = [tuplify(r) for r in results] \
            if is_main_process() else []


def tuplify(x):
    """weights_only unpickling returns lists for tuples; restore nested tuples."""
    if isinstance(x, list):
        return tuple(tuplify(v) for v in x)
    return x


class ResumeMixin:
    """The state file of :class:`~.ctta_loop.CTTALoop`.

    Reads only the loop's public attributes: ``runner``, ``method``,
    ``method_cfg``, ``results``, ``fingerprint``, ``loop_telemetry``,
    ``rounds``, ``domains``, ``datasets``, ``checkpoint``, ``resume_force``
    and the numeric options (``precision``, ``tta_pipeline``...).
    """

    #: (pass, image) of the last state this process saved.
    _saved_at: Optional[Tuple[int, int]] = None

    @property
    def state_path(self) -> str:
        return osp.join(self.runner.work_dir, STATE_FILE)

    def settings_fingerprint(self) -> Dict[str, Any]:
        """What determines this run's numbers (:func:`.run_state.run_fingerprint`
        of the method, model, stream and numeric loop options, checkpoint
        and seed), compared on ``--resume``."""
        cfg = self.runner.cfg
        return run_fingerprint(
            self.method_cfg, cfg.get('model', {}),
            dict(domains=self.domains, rounds=self.rounds,
                 tta_pipeline=self.tta_pipeline,
                 dataloader=self.dataloader_cfg),
            dict(precision=self.precision,
                 skip_attention_weights=self.skip_attention_weights,
                 cpu_malloc=self.cpu_malloc, check_labels=self.check_labels),
            # The seed the user fixed (None: mmengine drew one; a resumed run
            # continues from the saved random state either way).
            self.checkpoint, (cfg.get('randomness') or {}).get('seed'))

    def report_finished_run(self) -> None:
        """A finished run resumed (a scheduler's retry): its table, printed
        whatever the log level (what the retried job shows; rank 0)."""
        if is_main_process():
            self.results.write()  # a forced resume's note
            print('--resume: this run had finished; its results '
                  f'({osp.join(self.runner.work_dir, "ctta_results.md")}):\n'
                  + self.results.markdown(), flush=True)

    def run_provenance(self) -> Dict[str, Any]:
        """Where the results come from (rank 0 dumps the resolved config)."""
        runner = self.runner
        dump = osp.join(runner.work_dir, 'ctta_config.py')
        if is_main_process():
            try:
                runner.cfg.dump(dump)
            except Exception:  # noqa: BLE001  (a config mmengine cannot dump)
                dump = None
        return provenance(getattr(runner.cfg, 'filename', None), dump,
                          self.checkpoint,
                          self.fingerprint.get('checkpoint_sha256'),
                          runner.seed, method_label(self.method_cfg, METHODS))

    def state_signature(self) -> Dict[str, Any]:
        """The stream a state belongs to (method type, rounds, domains and
        their lengths)."""
        return dict(method=self.method_cfg.get('type'), rounds=self.rounds,
                    domains=[d['name'] for d in self.domains],
                    lengths=[len(self.datasets[d['name']]) for d in self.domains])

    def save_state(self, pass_idx: int, image_idx: int, evaluator,
                   seconds: float, skipped_at_start: int) -> None:
        """Write the resume state and, at a pass end (no ``evaluator``), the
        results tables (rank 0). Every rank must call it: on several
        processes the metric results are gathered from all of them, and a
        failed write (a full disk) stops every rank."""
        metric_results = gathered_results(evaluator) \
            if evaluator is not None else []
        telemetry = self.loop_telemetry.state_dict(evaluator is not None)
        error: Optional[BaseException] = None
        if is_main_process():
            state = dict(
                version=STATE_VERSION, signature=self.state_signature(),
                pass_idx=pass_idx, image_idx=image_idx, seconds=seconds,
                skipped_at_start=skipped_at_start,
                method=self.method.state_dict(),
                metric_results=metric_results,
                results=self.results.state_dict(), rng=rng_state(),
                telemetry=telemetry, fingerprint=self.fingerprint)
            try:
                save_state_file(state, self.state_path, self._kept())
                self._saved_at = (pass_idx, image_idx)
                if evaluator is None:
                    self.results.write(kept=self._kept(tables=True))
            except Exception as e:  # noqa: BLE001  (raised on every rank)
                error = e
        failures = rank_errors(error)
        if failures:
            raise_rank_errors(error, failures, f'saving {self.state_path}')

    def _kept(self, tables: bool = False) -> str:
        """What a failed write leaves intact and how to go on, in words."""
        path = self.state_path
        if self._saved_at is not None:
            p, i = self._saved_at
            where = (f'{path} (it continues at pass '
                     f'{p + 1}/{self.rounds * len(self.domains)}, image {i})')
        elif osp.isfile(path):
            where = path
        else:
            return ('No resume state had been saved yet: free space and run '
                    'the command again.')
        if tables:
            return (f'The resume state {where} is saved: free space and run '
                    'the same command with --resume, which writes the tables '
                    'again.')
        return (f'The previous state {where} is intact: free space and run '
                'the same command with --resume to continue from there.')

    def load_state(self) -> Optional[dict]:
        """The saved state to resume from (None: none saved), checked against
        this run; a finished run's table restored."""
        path = self.state_path
        if not osp.isfile(path):
            print_log(f'--resume: no state at {path}; starting the stream from '
                      'the beginning.', logger='current', level=30)
            return None
        state = load_state_file(path)
        if state.get('version') != STATE_VERSION:
            raise ValueError(f'{path}: unknown state version {state.get("version")}')
        if state['signature'] != self.state_signature():
            raise ValueError(
                f'{path} was written by a different stream '
                f"({state['signature']}) than this config "
                f'({self.state_signature()}); '
                'use another --work-dir or delete the file.')
        if 'fingerprint' in state:
            diff = fingerprint_diff(state['fingerprint'], self.fingerprint)
        else:  # written before states carried one
            diff = []
            print_log(f'--resume: {path} records no settings fingerprint (an '
                      'older version wrote it); the settings are not checked.',
                      logger='current', level=30)
        if diff and not self.resume_force:
            raise ValueError(
                f'{path} was written by a run with other settings; resuming '
                'would mix two runs in one table. What differs (saved -> '
                'now):\n  ' + '\n  '.join(diff) + '\nUse another --work-dir, '
                'or --resume --force to continue anyway (recorded in the '
                'results).')
        total = self.rounds * len(self.domains)
        print_log(f'--resume: continuing at pass {state["pass_idx"] + 1}/{total}, '
                  f'image {state["image_idx"]}', logger='current')
        if state['pass_idx'] >= total:
            # Finished run: restore the table only.
            self.method.load_state_dict(state['method'])
            self.results.load_state_dict(state['results'])
        if diff:
            note = ('resumed with --force although the settings differ '
                    '(saved -> now): ' + '; '.join(diff))
            print_log(note, logger='current', level=30)
            self.results.notes.append(note)
            # Recorded for every later save (the pass restores the results).
            state['results'] = self.results.state_dict() \
                if state['pass_idx'] >= total else dict(
                    state['results'], notes=list(self.results.notes))
        return state
