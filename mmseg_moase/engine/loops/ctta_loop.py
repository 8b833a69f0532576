"""The continual test-time adaptation loop: rounds x domains, no reset."""
import contextlib
import copy
import os.path as osp
import time
from typing import Any, Dict, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from mmseg.registry import LOOPS
from ...evaluation.ctta_iou_metric import CTTAIoUMetric
from ...evaluation.results import CTTAResults
from ...evaluation.verdict import COLLAPSE_MIOU_RATIO, MAX_SKIPPED_SHARE
from ...methods.base import BaseCTTAMethod, unwrap
from ...methods.builder import build_ctta_method, resolve_method_cfg
from ...models.sync_bn import stand_in_batch
from ...utils.dist import (check_same_on_all_ranks, rank_errors,
                           rng_fingerprint, state_fingerprint)
from ...utils.fileio import check_writable_dir
from ...utils.options import check_share
from ...utils.precision import step_precision
from ...utils.progress import StreamProgress
from .domain_data import (build_domain_dataset, build_pass_evaluator,
                          build_pass_loader)
from .loop_config import WHERE, check_loop_config
from .loop_state import ResumeMixin, restore_results, set_rng_state
from .loop_telemetry import LoopTelemetry
from .model_prep import (distribute_model, prepare_stream_model,
                         start_ctta_method)
from .predictions import save_predictions
from .run_state import Interrupts, StreamInterrupted
from .stream_checks import (StreamDataError, check_batch_labels,
                            check_classes, load_error, raise_batch_error)
from .stream_pass import StreamPass
from .work_dir_lock import hold_work_dir

__all__ = ['CTTALoop', 'StreamDataError']


@LOOPS.register_module()
class CTTALoop(ResumeMixin, BaseLoop):
    """Run a CTTA method over a continual stream of target domains.

    (This file is the loop proper; its configuration checks
    (:mod:`.loop_config`), model preparation (:mod:`.model_prep`), domain data
    and its checks on disk (:mod:`.domain_data`), batch checks
    (:mod:`.stream_checks`), telemetry (:mod:`.loop_telemetry`) and state file
    (:mod:`.loop_state`, mixed in) live in their own files.)

    The stream is ``rounds`` x ``domains`` passes in order, with no reset between
    them. Each pass is scored on its own with the evaluator of the config (mmseg's
    IoU machinery at the label's original resolution); the per-pass table is
    written to ``<work_dir>/ctta_results.{json,csv,md}`` after every pass.

    Use it as ``test_cfg`` and run with ``runner.test()`` (``tools/test_ctta.py``).
    ``test_dataloader`` is the template every domain's dataloader is built from
    (batch size, workers, pipeline); each domain's ``dataset`` is merged over the
    template's.

    On W processes (``tools/dist_test_ctta.sh``, mmengine's ``pytorch``
    launcher) with per-process batch b, every step consumes the next W*b images
    of the stream (:class:`StreamSampler`), the method averages gradients over
    the ranks (:meth:`BaseCTTAMethod.update`), every BatchNorm becomes a
    :class:`CTTASyncBatchNorm` (global test-batch statistics), and the metric
    results are gathered by mmengine's evaluator: the run is that of one process
    with batch W*b. A rank with no image in a pass's last step runs a stand-in
    batch that counts for nothing. Errors met while loading or checking a batch
    stop every rank (:func:`rank_errors`), and with ``check_sync`` the ranks'
    weights, teacher and optimiser state are compared after every pass.

    Args:
        runner: The mmengine runner.
        dataloader (dict): Dataloader template (``test_dataloader``).
        evaluator (dict | list): Evaluator config (``test_evaluator``).
        method (dict): The method config, built from ``METHODS``.
        domains (Sequence[dict]): ``dict(name=..., dataset=dict(...))`` in stream
            order.
        rounds (int): Passes over the domain list. Defaults to 1.
        checkpoint (str, optional): Source checkpoint, loaded (and checked against
            the model) before the stream starts.
        save_interval (int): Images between resume states; 0 = only at pass ends.
            Defaults to 50.
        resume (bool): Continue from ``<work_dir>/ctta_state.pth``; refused
            when the state's settings fingerprint differs from this run's.
        resume_force (bool): Resume despite a different fingerprint (recorded
            in the results' notes). ``tools/test_ctta.py --resume --force``.
        out_preds (str, optional): Folder for label-ID PNG predictions.
        out_preds_color (bool): Also save colour PNGs.
        progress_interval (float): Seconds between progress lines in logs.
        check_labels (bool): Check label values and sizes of every image.
        tta_pipeline (list, optional): The multi-view (``TestTimeAug``) pipeline
            used instead of the template's for methods with ``multi_view=True``
            (CoTTA, MoASE with the CoTTA-style teacher).
        plain_view_index (int, optional): Which view of ``tta_pipeline`` is the
            plain one (the stream's ``plain_view_index``), given to the method.
            None: the method finds the unscaled, unflipped view, which a stream
            whose test pipeline resizes must not rely on (an error).
        check_sync (bool): On several processes, check that all ranks start
            with the same weights and random state and hold the same method
            state (student, teacher, optimiser) after every pass; raises if not.
            Defaults to True.
        cpu_malloc (str): ``'keep'`` (default): on CPU, glibc keeps freed
            memory for reuse (:mod:`~mmseg_moase.utils.cpu_malloc`; about a
            third off a 14-view teacher's step, results unchanged, the
            process holds its peak memory). ``'default'``: the allocator as is.
        skip_attention_weights (bool): Run MiT attention without the weight
            map mmseg computes and discards (:mod:`~mmseg_moase.models.
            fast_attention`; equal up to float rounding). Defaults to True.
        precision (str): ``'fp32'`` (default) or ``'bf16'``: every
            ``method.step`` under bfloat16 autocast
            (:mod:`~mmseg_moase.utils.precision`; weights, optimiser and EMA
            stay float32). For GPUs with bfloat16 units.
        telemetry (bool): Record, per pass, what adaptation did
            (:class:`.loop_telemetry.LoopTelemetry`): loss terms and step
            statistics, a teacher method's student mIoU, parameter drift per
            group, telemetry modules' statistics; to ``ctta_results.*``, the
            log and the visualizer (``ctta/...``). Defaults to True.
        max_skipped_share, collapse_miou_ratio (float): The table's verdict
            (:mod:`~mmseg_moase.evaluation.verdict`): untrusted above this
            share of skipped updates (default 0.05); an mIoU collapse below
            this fraction of the first pass's mIoU (default 0.25).
    """

    def __init__(self, runner, dataloader: dict, evaluator, method: dict,
                 domains: Sequence[dict], rounds: int = 1,
                 checkpoint: Optional[str] = None, save_interval: int = 50,
                 resume: bool = False, out_preds: Optional[str] = None,
                 out_preds_color: bool = False, progress_interval: float = 10.0,
                 check_labels: bool = True,
                 tta_pipeline: Optional[list] = None,
                 check_sync: bool = True, cpu_malloc: str = 'keep',
                 skip_attention_weights: bool = True,
                 precision: str = 'fp32', telemetry: bool = True,
                 resume_force: bool = False,
                 plain_view_index: Optional[int] = None,
                 max_skipped_share: float = MAX_SKIPPED_SHARE,
                 collapse_miou_ratio: float = COLLAPSE_MIOU_RATIO) -> None:
        check_loop_config(dataloader, method, domains, rounds, cpu_malloc,
                          precision)
        self.max_skipped_share = check_share(WHERE, 'max_skipped_share',
                                             max_skipped_share)
        self.collapse_miou_ratio = check_share(WHERE, 'collapse_miou_ratio',
                                               collapse_miou_ratio)
        self._runner = runner
        self.dataloader = None
        self.dataloader_cfg = copy.deepcopy(dataloader)
        self.evaluator_cfg = copy.deepcopy(evaluator)
        # Fingerprinted and labelled as it runs: the default optimiser filled in.
        self.method_cfg = resolve_method_cfg(method)
        self.domains = [copy.deepcopy(d) for d in domains]
        self.rounds = rounds
        self.checkpoint = checkpoint
        self.save_interval = int(save_interval)
        self.resume = resume
        self.resume_force = bool(resume_force)
        self.out_preds = out_preds
        self.out_preds_color = out_preds_color
        self.progress_interval = progress_interval
        self.check_labels = check_labels
        self.tta_pipeline = copy.deepcopy(tta_pipeline)
        self.plain_view_index = plain_view_index
        self.check_sync = check_sync
        self.cpu_malloc = cpu_malloc
        self.skip_attention_weights = bool(skip_attention_weights)
        self.precision = precision
        self.telemetry = bool(telemetry)
        self.method: Optional[BaseCTTAMethod] = None
        self.loop_telemetry: Optional[LoopTelemetry] = None
        self.results: Optional[CTTAResults] = None
        self.datasets: Dict[str, Any] = {}
        #: What determines the numbers (:func:`.run_state.run_fingerprint`).
        self.fingerprint: Dict[str, Any] = {}
        self._device_type = 'cpu'  # of the model; set by run()
        self._interrupts = Interrupts()

    def run(self) -> Dict[str, Any]:
        """The stream, holding ``<work_dir>/ctta.lock`` (:mod:`.work_dir_lock`);
        returns ``mIoU`` (mean over the passes) and ``trusted`` (the verdict,
        :mod:`~mmseg_moase.evaluation.verdict`)."""
        check_writable_dir(self.runner.work_dir)
        with hold_work_dir(self.runner.work_dir):
            return self._run()

    def _run(self) -> Dict[str, Any]:
        runner = self.runner
        # The method gets the stream's plain view and the telemetry switch
        # at construction.
        pipeline = (self.dataloader_cfg.get('dataset') or {}).get('pipeline')
        self.method = method = build_ctta_method(
            self.method_cfg, self.plain_view_index, pipeline or (),
            telemetry=self.telemetry)
        model = unwrap(runner.model)
        self._device_type = next(model.parameters()).device.type
        prepare_stream_model(model, self.checkpoint, self.cpu_malloc,
                             self.skip_attention_weights)
        self.datasets = {
            d['name']: build_domain_dataset(
                self.dataloader_cfg, d, self.tta_pipeline, method.multi_view,
                type(method).__name__) for d in self.domains}
        check_classes(model, self.datasets)
        distribute_model(model)
        runner.call_hook('before_test')
        runner.call_hook('before_test_epoch')
        # setup, then a hook point of this loop (hooks bind what the method
        # runs, e.g. the EMA teacher's update), then what is missing.
        start_ctta_method(method, runner.model, runner.call_hook)
        self.loop_telemetry = LoopTelemetry(runner, method, self.telemetry)
        if self.check_sync:
            check_same_on_all_ranks(
                dict(weights=state_fingerprint(model.state_dict()),
                     random_state=rng_fingerprint()), 'at the start')
        self.results = CTTAResults(
            type(method).__name__, [d['name'] for d in self.domains],
            self.rounds, runner.work_dir,
            max_skipped_share=self.max_skipped_share,
            collapse_miou_ratio=self.collapse_miou_ratio)
        self.fingerprint = self.settings_fingerprint()
        self.results.provenance = self.run_provenance()
        passes = [(r, d) for r in range(self.rounds) for d in self.domains]
        lengths = [len(self.datasets[d['name']]) for _, d in passes]
        resume_state = self.load_state() if self.resume else None
        first_pass = resume_state['pass_idx'] if resume_state else 0
        progress = StreamProgress(
            total=sum(lengths),
            done=sum(lengths[:first_pass]) +
            (resume_state['image_idx'] if resume_state else 0),
            interval=self.progress_interval,
            # Rank 0 only; its running mIoU is of rank 0's share of the images.
            enabled=is_main_process())
        if first_pass >= len(passes):
            self.report_finished_run()
            runner.call_hook('after_test')
            return self.results.outcome()
        with self._interrupts:
            for p, (r, domain) in enumerate(passes):
                if p < first_pass:
                    continue
                self._run_pass(p, r, domain, progress,
                               resume_state if p == first_pass else None)
                resume_state = None

        outcome = self.results.outcome()
        for warning in self.results.verdict()['warnings']:
            print_log(warning, logger='current', level=30)
        print_log(self.results.summary_line(), logger='current')
        print_log('results: ' + osp.join(runner.work_dir, 'ctta_results.md'),
                  logger='current')
        self.loop_telemetry.plot(self.results.records, self.results.method)
        runner.call_hook('after_test_epoch', metrics=dict(mIoU=outcome['mIoU']))
        runner.call_hook('after_test')
        return outcome

    def _run_pass(self, pass_idx: int, round_idx: int, domain: dict,
                  progress: StreamProgress, state: Optional[dict]) -> None:
        """One (round, domain) pass: open it, step through its batches (saving
        the state every ``save_interval`` images), close it."""
        ps = self._open_pass(pass_idx, round_idx, domain, progress, state)
        done, since_save = ps.start, 0
        it = iter(ps.loader)
        if state:
            set_rng_state(state['rng'])
        ps.t0 = time.perf_counter()
        for batch_idx, (n_step, n_local) in enumerate(ps.shares):
            data_batch = self._next_batch(ps, it, done, n_local)
            self._step(ps, batch_idx, data_batch, n_step, n_local, done)
            done += n_step
            since_save += n_step
            progress.update(n_step, ps.miou_fn)
            if self.save_interval and since_save >= self.save_interval \
                    and done < len(ps.dataset):
                self.save_state(pass_idx, done, ps.evaluator, ps.elapsed(),
                                ps.skipped0)
                since_save = 0
        progress.update(0, ps.miou_fn, force=True)
        self._close_pass(ps, progress)

    def _open_pass(self, pass_idx: int, round_idx: int, domain: dict,
                   progress: StreamProgress, state: Optional[dict]) -> StreamPass:
        """The pass's loader (from the resume position) and evaluators, the
        saved sums of a resumed pass restored, the method told of the pass."""
        runner, method = self.runner, self.method
        name = domain['name']
        dataset = self.datasets[name]
        start = state['image_idx'] if state else 0
        loader = build_pass_loader(runner, self.dataloader_cfg, dataset, start)
        # mmengine's logger/timer hooks read len(runner.test_dataloader).
        self.dataloader = loader
        def evaluator_of(collect_dir: str):
            return build_pass_evaluator(runner, self.evaluator_cfg, dataset,
                                        collect_dir)

        evaluator = evaluator_of('.dist_collect')
        runner.visualizer.dataset_meta = dataset.metainfo
        self.loop_telemetry.open_pass(evaluator_of, state)
        seconds, skipped0 = 0.0, method.skipped_updates
        if state:
            restore_results(evaluator, state['metric_results'])
            method.load_state_dict(state['method'])
            self.results.load_state_dict(state['results'])
            seconds, skipped0 = state['seconds'], state['skipped_at_start']
        if start == 0:
            method.on_pass_start(round_idx, name)
        label = f'R{round_idx + 1}/{self.rounds} {name}'
        progress.start_pass(label, len(dataset), start)
        print_log(f'CTTA pass {pass_idx + 1}/{self.rounds * len(self.domains)}: '
                  f'round {round_idx + 1} domain {name} ({len(dataset)} images'
                  + (f', resuming at image {start}' if start else '') + ')',
                  logger='current')
        iou = next((m for m in evaluator.metrics if isinstance(m, CTTAIoUMetric)),
                   None)
        return StreamPass(pass_idx=pass_idx, round_idx=round_idx, name=name,
                          label=label, dataset=dataset, loader=loader,
                          shares=loader.sampler.step_shares(),
                          evaluator=evaluator, start=start, seconds=seconds,
                          skipped0=skipped0,
                          miou_fn=iou.running_miou if iou else
                          (lambda: float('nan')))

    def _next_batch(self, ps: StreamPass, it, done: int, n_local: int):
        """The next batch, or, when any rank could not load or check its part
        (or was interrupted), the state saved and the error raised on every
        rank (none is left waiting in a collective)."""
        error: Optional[BaseException] = None
        data_batch = None
        if self._interrupts.pending is not None:
            error = StreamInterrupted(self._interrupts.pending)
        else:
            try:
                data_batch = next(it)
            except Exception as e:  # noqa: BLE001  (re-raised below)
                # Workers killed by the same signal while the batch was awaited.
                error = StreamInterrupted(self._interrupts.pending) \
                    if self._interrupts.pending is not None else \
                    load_error(e, ps.name, ps.dataset, done, n_local,
                               self.dataloader_cfg.get('batch_size', 1))
            try:
                if error is None and self.check_labels and n_local:
                    check_batch_labels(data_batch, ps.name, ps.dataset)
            except Exception as e:  # noqa: BLE001  (re-raised below)
                error = e
        failures = rank_errors(error)
        if not failures:
            return data_batch
        self.save_state(ps.pass_idx, done, ps.evaluator, ps.elapsed(),
                        ps.skipped0)
        raise_batch_error(error, failures, done, ps.label, self.state_path)

    def _step(self, ps: StreamPass, batch_idx: int, data_batch: dict,
              n_step: int, n_local: int, done: int) -> None:
        """One method step between the test-iteration hooks; its outputs
        scored, recorded and saved (a stand-in batch's count for nothing)."""
        runner, method = self.runner, self.method
        stand_in = n_local == 0
        method.set_step_share(n_local, n_step)
        runner.call_hook('before_test_iter', batch_idx=batch_idx,
                         data_batch=data_batch)
        skipped_before = method.skipped_updates
        with stand_in_batch() if stand_in else contextlib.nullcontext(), \
                step_precision(self.precision, self._device_type):
            outputs = method.step(data_batch)
        self.results.record_step(
            method.skipped_updates > skipped_before,
            dict(round=ps.round_idx + 1, domain=ps.name, image=done))
        if stand_in:
            outputs = []  # counts for nothing: not scored, not saved
        else:
            if len(outputs) != n_local:
                raise RuntimeError(
                    f'{type(method).__name__}.step returned {len(outputs)} '
                    f'outputs for a batch of {n_local} images')
            ps.evaluator.process(data_samples=outputs, data_batch=data_batch)
            self.loop_telemetry.record_step(outputs, data_batch)
            if self.out_preds:
                save_predictions(outputs, self.out_preds, ps.round_idx,
                                 ps.name, ps.dataset,
                                 color=self.out_preds_color)
        runner.call_hook('after_test_iter', batch_idx=batch_idx,
                         data_batch=data_batch, outputs=outputs)
        method.after_step()

    def _close_pass(self, ps: StreamPass, progress: StreamProgress) -> None:
        """Score the pass, record and log it, check the ranks agree, save."""
        method = self.method
        n = len(ps.dataset)
        record = ps.record(method.skipped_updates)
        record.update(self.loop_telemetry.pass_entries(n))
        self.results.records.append(record)  # written with the state below
        print_log(f'CTTA round {ps.round_idx + 1} {ps.name}: mIoU '
                  f'{record["mIoU"]:.2f} ({n} images, {record["seconds"]:.1f}s, '
                  f'{record["skipped_updates"]} skipped updates)',
                  logger='current')
        self.loop_telemetry.log(record, progress.done)
        if self.check_sync:
            check_same_on_all_ranks(
                {k: state_fingerprint(v) for k, v in method.state_dict().items()},
                f'after pass {ps.pass_idx + 1} ({ps.label})')
        self.save_state(ps.pass_idx + 1, 0, None, 0.0, method.skipped_updates)
