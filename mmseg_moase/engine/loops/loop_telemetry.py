"""Telemetry of the CTTA loop: per-step statistics, the student's own
score beside a teacher's, each pass's record, log line and scalars, and the
run's plot."""
import os.path as osp
from typing import Any, Dict, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.structures import PixelData

from mmseg.structures import SegDataSample
from ...evaluation.telemetry_plot import plot_telemetry
from ..telemetry import collect_module_telemetry


class TelemetryMixin:
    """Telemetry of :class:`~.ctta_loop.CTTALoop` (its ``_meter``,
    ``_student_eval`` and ``_drift``, set when a run records telemetry)."""

    def _record_step(self, outputs: Sequence, data_batch: dict) -> None:
        """One step's statistics and, for teacher methods, the student's own
        predictions scored against the same labels."""
        self._meter.add(self.method.step_stats())
        preds = self.method.student_predictions()
        if self._student_eval is None or not preds:
            return
        samples = []
        for s, p in zip(outputs, preds):
            sample = SegDataSample(metainfo=s.metainfo)
            sample.gt_sem_seg = s.gt_sem_seg
            sample.pred_sem_seg = PixelData(data=p.reshape(1, *p.shape[-2:]))
            samples.append(sample)
        self._student_eval.process(data_samples=samples, data_batch=data_batch)

    def _pass_telemetry(self, num_images: int) -> Dict[str, Any]:
        """The pass's telemetry entries of its results record."""
        method = self.method
        out: Dict[str, Any] = {}
        if self._student_eval is not None:
            metrics = self._student_eval.evaluate(num_images)
            out['student_mIoU'] = float(metrics.get('mIoU', float('nan')))
        tel = dict(self._meter.means())
        tel.update(collect_module_telemetry(method.segmentor))
        if self._drift is not None:
            tel.update(self._drift.measure(method.segmentor, 'drift.student'))
            if method.teacher is not None:
                tel.update(self._drift.measure(method.teacher, 'drift.teacher'))
        out['telemetry'] = {k: round(v, 6) for k, v in sorted(tel.items())}
        return out

    def _log_telemetry(self, record: Dict[str, Any], images_done: int) -> None:
        """Telemetry of a pass to the log and the visualizer's backends."""
        tel = record.get('telemetry', {})
        scalars = {f'ctta/{k}': v for k, v in tel.items()}
        scalars['ctta/mIoU'] = record['mIoU']
        if 'student_mIoU' in record:
            scalars['ctta/student_mIoU'] = record['student_mIoU']
        if is_main_process():
            self.runner.visualizer.add_scalars(scalars, step=images_done)
        shown = [f'{k}={v:.4g}' for k, v in tel.items()
                 if k.startswith(('loss.', 'gate.', 'pseudo_label.', 'drift.',
                                  'moase.all.'))]
        if 'student_mIoU' in record:
            shown.insert(0, f'student_mIoU={record["student_mIoU"]:.2f}')
        if shown:
            print_log('CTTA telemetry: ' + ', '.join(shown), logger='current')

    def _plot_telemetry(self) -> None:
        """The run's telemetry along the stream, ``ctta_telemetry.png`` (rank 0)."""
        if not self.telemetry or not is_main_process():
            return
        plot = osp.join(self.runner.work_dir, 'ctta_telemetry.png')
        if plot_telemetry(self.results.records, plot,
                          f'{self.results.method}: telemetry'):
            print_log(f'telemetry plot: {plot}', logger='current')
