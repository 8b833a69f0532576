"""Telemetry of the CTTA loop: per-step statistics, the student's own
score beside a teacher's, each pass's record, log line and scalars, and the
run's plot."""
import os.path as osp
from typing import Any, Callable, Dict, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from ...evaluation.telemetry_plot import plot_telemetry
from ..telemetry import (ParameterDrift, StepStatsMeter,
                         collect_module_telemetry, set_module_telemetry)
from .loop_state import gathered_results, restore_results


class LoopTelemetry:
    """What a CTTA run records of its adaptation (:mod:`..telemetry`).

    Created once the method is set up (so that its ``requires_grad`` flags
    say what can drift); with ``enabled=False`` every call is a no-op.

    Args:
        runner: The mmengine runner (work dir, visualizer).
        method: The built, set-up method (its student, teacher, step
            statistics and declared ``telemetry_keys``/``telemetry_panels``).
        enabled (bool): The loop's ``telemetry`` option.
    """

    def __init__(self, runner, method, enabled: bool) -> None:
        self.runner = runner
        self.method = method
        self.enabled = bool(enabled)
        self.meter = StepStatsMeter()
        self.student_eval = None
        self.drift: Optional[ParameterDrift] = None
        if self.enabled:
            set_module_telemetry(method.segmentor, True)
            self.drift = ParameterDrift(method.segmentor)

    def open_pass(self, build_evaluator: Callable[[str], Any],
                  state: Optional[dict]) -> None:
        """Start a pass's sums: the step meter, the student's evaluator (for
        a method that scores a teacher; ``build_evaluator(collect_dir)``) and
        the module sums; a resumed pass takes its saved meter and student
        results back."""
        self.meter = StepStatsMeter()
        self.student_eval = build_evaluator('.dist_collect_student') \
            if self.enabled and self.method.scores_teacher else None
        if not self.enabled:
            return
        # Sums of the previous pass (or of a resumed run's start) go.
        collect_module_telemetry(self.method.segmentor)
        tel = (state or {}).get('telemetry') or {}
        if 'steps' in tel:
            self.meter.load_state_dict(tel['steps'])
        if self.student_eval is not None and 'student_results' in tel:
            restore_results(self.student_eval, tel['student_results'])

    def record_step(self, outputs: Sequence, data_batch: dict) -> None:
        """One step's statistics and, for teacher methods, the student's own
        predictions scored against the same labels."""
        if not self.enabled:
            return
        self.meter.add(self.method.step_stats())
        preds = self.method.student_predictions()
        if self.student_eval is None or not preds:
            return
        samples = []
        for s, p in zip(outputs, preds):
            sample = SegDataSample(metainfo=s.metainfo)
            sample.gt_sem_seg = s.gt_sem_seg
            sample.pred_sem_seg = PixelData(data=p.reshape(1, *p.shape[-2:]))
            samples.append(sample)
        self.student_eval.process(data_samples=samples, data_batch=data_batch)

    def pass_entries(self, num_images: int) -> Dict[str, Any]:
        """The pass's telemetry entries of its results record."""
        if not self.enabled:
            return {}
        method = self.method
        out: Dict[str, Any] = {}
        if self.student_eval is not None:
            metrics = self.student_eval.evaluate(num_images)
            out['student_mIoU'] = float(metrics.get('mIoU', float('nan')))
        tel = dict(self.meter.means())
        tel.update(collect_module_telemetry(method.segmentor))
        if self.drift is not None:
            tel.update(self.drift.measure(method.segmentor, 'drift.student'))
            if method.teacher is not None:
                tel.update(self.drift.measure(method.teacher, 'drift.teacher'))
        out['telemetry'] = {k: round(v, 6) for k, v in sorted(tel.items())}
        return out

    def log(self, record: Dict[str, Any], images_done: int) -> None:
        """Telemetry of a pass to the log (the loop's entries and those the
        method declares) and the visualizer's backends."""
        if not self.enabled:
            return
        tel = record.get('telemetry', {})
        scalars = {f'ctta/{k}': v for k, v in tel.items()}
        scalars['ctta/mIoU'] = record['mIoU']
        if 'student_mIoU' in record:
            scalars['ctta/student_mIoU'] = record['student_mIoU']
        if is_main_process():
            self.runner.visualizer.add_scalars(scalars, step=images_done)
        prefixes = ('loss.', 'drift.') + tuple(self.method.telemetry_keys)
        shown = [f'{k}={v:.4g}' for k, v in tel.items()
                 if k.startswith(prefixes)]
        if 'student_mIoU' in record:
            shown.insert(0, f'student_mIoU={record["student_mIoU"]:.2f}')
        if shown:
            print_log('CTTA telemetry: ' + ', '.join(shown), logger='current')

    def plot(self, records: Sequence[Dict[str, Any]], label: str) -> None:
        """The run's telemetry along the stream, ``ctta_telemetry.png`` (rank
        0), with the panels the method declares."""
        if not self.enabled or not is_main_process():
            return
        plot = osp.join(self.runner.work_dir, 'ctta_telemetry.png')
        if plot_telemetry(records, plot, f'{label}: telemetry',
                          panels=self.method.telemetry_panels):
            print_log(f'telemetry plot: {plot}', logger='current')

    def state_dict(self, mid_pass: bool) -> Dict[str, Any]:
        """What a resumed pass needs to finish its telemetry: the step meter
        and the student's metric results (module sums start afresh). Every
        rank must call it on several processes."""
        if not self.enabled or not mid_pass:
            return {}
        state: Dict[str, Any] = dict(steps=self.meter.state_dict())
        if self.student_eval is not None:
            state['student_results'] = gathered_results(self.student_eval)
        return state
