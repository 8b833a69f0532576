"""The continual test-time adaptation loop: rounds x domains, no reset."""
import contextlib
import copy
import dataclasses
import os.path as osp
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from mmseg.registry import DATASETS, LOOPS
from ...datasets.cityscapes_prep import missing_labels_error
from ...evaluation.ctta_iou_metric import CTTAIoUMetric
from ...evaluation.results import CTTAResults
from ...evaluation.verdict import COLLAPSE_MIOU_RATIO, MAX_SKIPPED_SHARE
from ...methods.base import BaseCTTAMethod, unwrap
from ...methods.builder import build_ctta_method
from ...models.fast_attention import skip_attention_weights
from ...models.ctta_parts import use_rank_statistics
from ...models.sync_bn import convert_ctta_sync_bn, stand_in_batch
from ...registry import METHODS
from ...utils.checkpoint import load_source_checkpoint
from ...utils.cpu_malloc import CPU_MALLOC_MODES, set_cpu_malloc
from ...utils.dist import (check_same_on_all_ranks, is_distributed,
                           raise_rank_errors, rank_errors, rng_fingerprint,
                           state_fingerprint)
from ...utils.fileio import check_writable_dir
from ...utils.options import check_choice, check_share
from ...utils.precision import PRECISIONS, step_precision
from ...utils.progress import StreamProgress
from ..telemetry import (ParameterDrift, StepStatsMeter,
                         collect_module_telemetry, set_module_telemetry)
from .predictions import save_predictions
from .loop_state import ResumeMixin, restore_results, set_rng_state
from .loop_telemetry import TelemetryMixin
from .run_state import Interrupts, StreamInterrupted, run_fingerprint
from .stream_checks import StreamChecksMixin, StreamDataError
from .work_dir_lock import hold_work_dir

__all__ = ['CTTALoop', 'StreamDataError', 'prepare_ctta_model']


@dataclasses.dataclass
class _Pass:
    """What the steps of one (round, domain) pass share."""
    pass_idx: int
    round_idx: int
    name: str
    label: str
    dataset: Any
    loader: Any
    shares: List[Tuple[int, int]]
    evaluator: Any
    start: int  # first image (a resumed pass's position)
    seconds: float  # time spent before this process took the pass up
    skipped0: int  # the method's skipped updates when the pass began
    miou_fn: Callable[[], float]
    t0: float = 0.0  # perf_counter() at the first step

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.t0


def prepare_ctta_model(model, cpu_malloc: str = 'keep',
                       skip_weights: bool = True) -> bool:
    """What :class:`CTTALoop` does to the model before a stream (and
    ``tools/benchmark_ctta.py`` before measuring): on CPU apply the allocator
    mode (:func:`~mmseg_moase.utils.cpu_malloc.set_cpu_malloc`), and switch MiT
    attention to skip its weight map
    (:func:`~mmseg_moase.models.fast_attention.skip_attention_weights`).

    Returns:
        bool: Whether freed CPU memory is now kept for reuse.
    """
    kept = (next(model.parameters()).device.type == 'cpu'
            and set_cpu_malloc(cpu_malloc))
    if skip_weights:
        skip_attention_weights(model)
    return kept


@LOOPS.register_module()
class CTTALoop(ResumeMixin, TelemetryMixin, StreamChecksMixin, BaseLoop):
    """Run a CTTA method over a continual stream of target domains.

    (This file is the loop proper; its state file (:mod:`.loop_state`),
    telemetry (:mod:`.loop_telemetry`) and data checks (:mod:`.stream_checks`)
    are mixed in.)

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
        cpu_malloc (str): ``'keep'`` (default): when the model runs on CPU,
            glibc keeps freed memory for reuse instead of returning every
            large tensor's pages to the system
            (:func:`~mmseg_moase.utils.cpu_malloc.keep_freed_memory`; about a
            third off a 14-view teacher's step on CPU, results unchanged, the
            process holds its peak memory). ``'default'`` leaves the allocator
            alone. No effect on a CUDA model.
        skip_attention_weights (bool): Run MiT attention without the
            attention-weight map mmseg computes and discards
            (:func:`~mmseg_moase.models.fast_attention.skip_attention_weights`;
            outputs equal up to float rounding, the attention's forward about 3x
            faster on CPU at 2x views). Defaults to True.
        precision (str): ``'fp32'`` (default) or ``'bf16'``: every
            ``method.step`` under bfloat16 autocast
            (:mod:`~mmseg_moase.utils.precision`; weights, optimiser and EMA
            stay float32). For GPUs with bfloat16 units.
        telemetry (bool): Record, per pass, what adaptation did
            (:mod:`~mmseg_moase.engine.telemetry`): the mean of every loss
            term and of the method's step statistics, the student's own mIoU
            beside the scored one for teacher methods (from the predictions
            its loss already makes), parameter drift per group of student and
            teacher, and the statistics of telemetry modules (MoASE: dead
            tokens, routing, keep ratios). Written to ``ctta_results.*``,
            logged, and sent to the visualizer's backends as scalars
            (``ctta/...``, step = images so far). Defaults to True.
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
        check_choice('CTTALoop (ctta_cfg)', 'cpu_malloc', cpu_malloc,
                     CPU_MALLOC_MODES)
        self.max_skipped_share = check_share(
            'CTTALoop (ctta_cfg)', 'max_skipped_share', max_skipped_share)
        self.collapse_miou_ratio = check_share(
            'CTTALoop (ctta_cfg)', 'collapse_miou_ratio', collapse_miou_ratio)
        check_choice('CTTALoop (ctta_cfg)', 'precision', precision, PRECISIONS)
        self._runner = runner
        self.dataloader = None
        if not isinstance(dataloader, dict):
            raise TypeError('CTTALoop needs `test_dataloader` as a config dict '
                            '(the template of every domain dataloader)')
        self.dataloader_cfg = copy.deepcopy(dataloader)
        self.evaluator_cfg = copy.deepcopy(evaluator)
        if not isinstance(method, dict) or 'type' not in method:
            raise ValueError('`ctta_method` (test_cfg.method) must be a dict '
                             'with a `type` (one of '
                             f'{sorted(METHODS.module_dict)})')
        self.method_cfg = copy.deepcopy(method)
        if not domains:
            raise ValueError('`test_cfg.domains` is empty: list the stream as '
                             "[dict(name='fog', dataset=dict(...)), ...]")
        for d in domains:
            if not isinstance(d, dict) or 'name' not in d or 'dataset' not in d:
                raise ValueError('each entry of `test_cfg.domains` needs `name` '
                                 f'and `dataset`, got {d!r}')
        names = [d['name'] for d in domains]
        if len(set(names)) != len(names):
            raise ValueError(f'domain names must be unique, got {names}')
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f'`test_cfg.rounds` must be an integer >= 1, got '
                             f'{rounds!r}')
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
        self._drift: Optional[ParameterDrift] = None
        self._meter = StepStatsMeter()
        self._student_eval = None
        self._device_type = 'cpu'  # of the model; set by run()
        self.method: Optional[BaseCTTAMethod] = None
        self.results: Optional[CTTAResults] = None
        self.datasets: Dict[str, Any] = {}
        self._fingerprint: Dict[str, Any] = {}
        self._interrupts = Interrupts()

    # ------------------------------------------------------------ building

    def _build_method(self) -> BaseCTTAMethod:
        pipeline = (self.dataloader_cfg.get('dataset') or {}).get('pipeline')
        return build_ctta_method(self.method_cfg, self.plain_view_index,
                                 pipeline or ())

    def _build_dataset(self, domain: dict):
        cfg = copy.deepcopy(self.dataloader_cfg.get('dataset', {}))
        cfg.update(copy.deepcopy(domain['dataset']))
        if self.method.multi_view:
            if not self.tta_pipeline:
                raise ValueError(
                    f'{type(self.method).__name__} uses the multi-view teacher '
                    'but the stream declares no `tta_pipeline` (ctta_stream.'
                    'tta_pipeline in the config).')
            cfg['pipeline'] = copy.deepcopy(self.tta_pipeline)
        name = domain['name']
        root = cfg.get('data_root', '')
        img_dir = osp.join(root, cfg.get('data_prefix', {}).get('img_path', ''))
        if not osp.isdir(img_dir):
            raise FileNotFoundError(
                f"domain '{name}': image folder {img_dir} does not exist (from "
                f"data_root={root!r} and data_prefix={cfg.get('data_prefix')}); "
                'set the data root of the stream (--cfg-options '
                'ctta_stream.dataloader.dataset.data_root=/path/to/data, or '
                'the domain\'s own ctta_stream.domains.<i>.dataset.data_root '
                'where the config sets one per domain).')
        cfg['lazy_init'] = True
        dataset = DATASETS.build(cfg)
        data_list = dataset.load_data_list()
        if not data_list:
            raise ValueError(
                f"domain '{name}' has no images: nothing matches "
                f"'*{getattr(dataset, 'img_suffix', '')}' under {img_dir}.")
        missing = [d['seg_map_path'] for d in data_list
                   if d.get('seg_map_path') and not osp.isfile(d['seg_map_path'])]
        if missing:  # names the first file and, for Cityscapes, the fix
            raise missing_labels_error(name, missing, root)
        dataset.full_init()
        return dataset

    def _build_evaluator(self, dataset, collect_dir: str):
        """An evaluator of the config for one pass over ``dataset``; on
        several processes its CPU-collected metrics gather through
        ``<work_dir>/<collect_dir>`` (not mmengine's ./.dist_test)."""
        runner = self.runner
        evaluator = runner.build_evaluator(copy.deepcopy(self.evaluator_cfg))
        evaluator.dataset_meta = dataset.metainfo
        if is_distributed():
            for metric in evaluator.metrics:
                if getattr(metric, 'collect_device', None) == 'cpu' and \
                        getattr(metric, 'collect_dir', None) is None:
                    metric.collect_dir = osp.join(runner.work_dir, collect_dir)
        return evaluator

    # ------------------------------------------------------------- running
    def run(self) -> Dict[str, Any]:
        """The stream, holding ``<work_dir>/ctta.lock`` (:mod:`.work_dir_lock`);
        returns ``mIoU`` (mean over the passes) and ``trusted`` (the verdict,
        :mod:`~mmseg_moase.evaluation.verdict`)."""
        check_writable_dir(self.runner.work_dir)
        with hold_work_dir(self.runner.work_dir):
            return self._run()

    def _run(self) -> Dict[str, Any]:
        runner = self.runner
        self.method = self._build_method()
        model = unwrap(runner.model)
        self._device_type = next(model.parameters()).device.type
        if prepare_ctta_model(model, self.cpu_malloc,
                              self.skip_attention_weights):
            print_log('CPU allocator: freed memory is kept for reuse '
                      "(ctta_cfg.cpu_malloc='keep'; 'default' turns it off)",
                      logger='current')
        if self.checkpoint:
            load_source_checkpoint(model, self.checkpoint)
        self.datasets = {d['name']: self._build_dataset(d) for d in self.domains}
        self._check_classes(model)

        if is_distributed():
            # Test-batch statistics of the global batch (TENT, NormStat; MoASE's
            # ASG keep ratios); the same tensors, so the checkpoint just loaded
            # stays in place.
            convert_ctta_sync_bn(model)
            use_rank_statistics(model)
        runner.call_hook('before_test')
        runner.call_hook('before_test_epoch')
        self.method.setup(runner.model)
        # A hook point of this loop: hooks bind what the method runs (the EMA
        # teacher's update); the method then says what is missing.
        runner.call_hook('before_ctta', method=self.method)
        self.method.ready()
        if self.telemetry:
            self.method.telemetry = True
            set_module_telemetry(self.method.segmentor, True)
            self._drift = ParameterDrift(self.method.segmentor)
        if self.check_sync:
            check_same_on_all_ranks(
                dict(weights=state_fingerprint(model.state_dict()),
                     random_state=rng_fingerprint()), 'at the start')
        self.results = CTTAResults(
            type(self.method).__name__, [d['name'] for d in self.domains],
            self.rounds, runner.work_dir,
            max_skipped_share=self.max_skipped_share,
            collapse_miou_ratio=self.collapse_miou_ratio)
        self._fingerprint = run_fingerprint(
            self.method_cfg, runner.cfg.get('model', {}),
            dict(domains=self.domains, rounds=self.rounds,
                 tta_pipeline=self.tta_pipeline,
                 dataloader=self.dataloader_cfg),
            dict(precision=self.precision,
                 skip_attention_weights=self.skip_attention_weights,
                 cpu_malloc=self.cpu_malloc, check_labels=self.check_labels),
            # The seed the user fixed (None: mmengine drew one; a resumed run
            # continues from the saved random state either way).
            self.checkpoint, (runner.cfg.get('randomness') or {}).get('seed'))
        self.results.provenance = self._provenance()
        passes = [(r, d) for r in range(self.rounds) for d in self.domains]
        lengths = [len(self.datasets[d['name']]) for _, d in passes]
        resume_state = self._load_state() if self.resume else None
        first_pass = resume_state['pass_idx'] if resume_state else 0
        progress = StreamProgress(
            total=sum(lengths),
            done=sum(lengths[:first_pass]) +
            (resume_state['image_idx'] if resume_state else 0),
            interval=self.progress_interval,
            # Rank 0 only; its running mIoU is of rank 0's share of the images.
            enabled=is_main_process())
        if first_pass >= len(passes):
            # A finished run resumed (a scheduler's retry): its table.
            if is_main_process():
                self.results.write()  # a forced resume's note
                # Printed whatever the log level: what the retried job shows.
                print('--resume: this run had finished; its results '
                      f'({osp.join(runner.work_dir, "ctta_results.md")}):\n'
                      + self.results.markdown(), flush=True)
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
        self._plot_telemetry()
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
                self._save_state(pass_idx, done, ps.evaluator, ps.elapsed(),
                                 ps.skipped0)
                since_save = 0
        progress.update(0, ps.miou_fn, force=True)
        self._close_pass(ps, progress)

    def _open_pass(self, pass_idx: int, round_idx: int, domain: dict,
                   progress: StreamProgress, state: Optional[dict]) -> '_Pass':
        """The pass's loader (from the resume position) and evaluators, the
        saved sums of a resumed pass restored, the method told of the pass."""
        runner, method = self.runner, self.method
        name = domain['name']
        dataset = self.datasets[name]
        start = state['image_idx'] if state else 0
        batch_size = self.dataloader_cfg.get('batch_size', 1)
        loader_cfg = copy.deepcopy(self.dataloader_cfg)
        loader_cfg['dataset'] = dataset
        loader_cfg['sampler'] = dict(type='StreamSampler', start=start,
                                     batch_size=batch_size)
        # A private generator keeps the global RNG (stochastic restore) untouched
        # by the DataLoader, so a resumed run draws exactly the same numbers.
        loader_cfg['generator'] = torch.Generator()
        loader = runner.build_dataloader(loader_cfg, seed=runner.seed)
        # mmengine's logger/timer hooks read len(runner.test_dataloader).
        self.dataloader = loader
        evaluator = self._build_evaluator(dataset, '.dist_collect')
        runner.visualizer.dataset_meta = dataset.metainfo
        self._meter = StepStatsMeter()
        self._student_eval = self._build_evaluator(
            dataset, '.dist_collect_student') \
            if self.telemetry and method.scores_teacher else None
        if self.telemetry:
            # Sums of the previous pass (or of a resumed run's start) go.
            collect_module_telemetry(method.segmentor)
        seconds, skipped0 = 0.0, method.skipped_updates
        if state:
            restore_results(evaluator, state['metric_results'])
            method.load_state_dict(state['method'])
            self.results.load_state_dict(state['results'])
            tel = state.get('telemetry') or {}
            if 'steps' in tel:
                self._meter.load_state_dict(tel['steps'])
            if self._student_eval is not None and 'student_results' in tel:
                restore_results(self._student_eval, tel['student_results'])
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
        return _Pass(pass_idx=pass_idx, round_idx=round_idx, name=name,
                     label=label, dataset=dataset, loader=loader,
                     shares=loader.sampler.step_shares(), evaluator=evaluator,
                     start=start, seconds=seconds, skipped0=skipped0,
                     miou_fn=iou.running_miou if iou else
                     (lambda: float('nan')))

    def _next_batch(self, ps: '_Pass', it, done: int, n_local: int):
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
                    self._load_error(e, ps.name, ps.dataset, done, n_local)
            try:
                if error is None and self.check_labels and n_local:
                    self._check_batch_labels(data_batch, ps.name, ps.dataset)
            except Exception as e:  # noqa: BLE001  (re-raised below)
                error = e
        failures = rank_errors(error)
        if not failures:
            return data_batch
        self._save_state(ps.pass_idx, done, ps.evaluator, ps.elapsed(),
                         ps.skipped0)
        if isinstance(error, StreamInterrupted):
            print_log(f'{error} at image {done} of {ps.label}: the state is '
                      f'saved to {self.state_path}; run the same command with '
                      '--resume to continue.', logger='current', level=40)
            raise SystemExit(128 + error.signum)
        if isinstance(error, StreamDataError):
            raise StreamDataError(
                f'{error} Progress up to image {done} of this pass is saved: '
                'fix the data and re-run with --resume.') from None
        raise_rank_errors(error, failures, f'at image {done} of {ps.label}')

    def _step(self, ps: '_Pass', batch_idx: int, data_batch: dict,
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
            if self.telemetry:
                self._record_step(outputs, data_batch)
            if self.out_preds:
                save_predictions(outputs, self.out_preds, ps.round_idx,
                                 ps.name, ps.dataset,
                                 color=self.out_preds_color)
        runner.call_hook('after_test_iter', batch_idx=batch_idx,
                         data_batch=data_batch, outputs=outputs)
        method.after_step()

    def _close_pass(self, ps: '_Pass', progress: StreamProgress) -> None:
        """Score the pass, record and log it, check the ranks agree, save."""
        method = self.method
        seconds = ps.elapsed()
        n = len(ps.dataset)
        metrics = ps.evaluator.evaluate(n)
        record = dict(
            round=ps.round_idx, domain=ps.name,
            mIoU=float(metrics.get('mIoU', float('nan'))),
            aAcc=metrics.get('aAcc'), mAcc=metrics.get('mAcc'),
            per_class_iou={k[4:]: v for k, v in metrics.items()
                           if k.startswith('IoU.')},
            images=n, seconds=round(seconds, 3),
            seconds_per_image=round(seconds / max(n, 1), 4),
            skipped_updates=method.skipped_updates - ps.skipped0)
        if self.telemetry:
            record.update(self._pass_telemetry(n))
        self.results.records.append(record)  # written with the state below
        print_log(f'CTTA round {ps.round_idx + 1} {ps.name}: mIoU '
                  f'{record["mIoU"]:.2f} ({n} images, {record["seconds"]:.1f}s, '
                  f'{record["skipped_updates"]} skipped updates)',
                  logger='current')
        if self.telemetry:
            self._log_telemetry(record, progress.done)
        if self.check_sync:
            check_same_on_all_ranks(
                {k: state_fingerprint(v) for k, v in method.state_dict().items()},
                f'after pass {ps.pass_idx + 1} ({ps.label})')
        self._save_state(ps.pass_idx + 1, 0, None, 0.0, method.skipped_updates)
