"""Turn a config + checkpoint + command-line options into a CTTA run."""
import os
import os.path as osp
from typing import Dict, Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner

from ..methods.builder import resolve_method_cfg
from ..utils.dist import configure_dist, end_distributed, init_dist_cpu
from ..utils.fileio import check_writable_dir

#: Keys prepare_ctta_config builds from the ``ctta_*`` keys, and where to set
#: what they hold.
OVERWRITTEN = {
    'test_dataloader': '`ctta_stream.dataloader` (and `ctta_stream.domains`)',
    'test_evaluator': '`ctta_evaluator`',
    'test_cfg': '`ctta_cfg` (loop options), `ctta_method` or `ctta_stream`',
}


#: Launchers the distributed tests cover (torchrun: ``pytorch``).
LAUNCHERS = ('none', 'pytorch')


def prepare_ctta_config(config: str, checkpoint: str,
                        work_dir: Optional[str] = None,
                        cfg_options: Optional[dict] = None,
                        launcher: str = 'none', resume: bool = False,
                        out_preds: Optional[str] = None,
                        seed: Optional[int] = None,
                        force: bool = False) -> Config:
    """Load ``config`` and apply the options of ``tools/test_ctta.py``.

    Mirrors mmseg's ``tools/test.py``: ``--cfg-options`` are merged first, the work
    dir is CLI > config > ``./work_dirs/<config name>``. The config's
    ``ctta_stream``, ``ctta_method`` and optional ``ctta_evaluator`` / ``ctta_cfg``
    become ``test_dataloader``, ``test_evaluator`` and a ``CTTALoop`` ``test_cfg``
    (so they combine with mmseg's own SegFormer configs, which define those keys).
    The checkpoint is loaded by the loop itself, which refuses a file whose keys do
    not fit the model instead of warning like ``load_from`` would. ``force``
    lets ``resume`` continue a state written with other settings. With a
    launcher other than ``'none'`` the config is made runnable on CPUs too
    (:func:`configure_dist`: gloo, a DDP wrapper without device ids).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f'launcher {launcher!r} is not supported; choose from {LAUNCHERS} '
            '(under Slurm or MPI, start the ranks with torchrun inside the job: '
            'tools/dist_test_ctta.sh)')
    if not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    for key in cfg_options or {}:
        target = next((t for k, t in OVERWRITTEN.items()
                       if key == k or key.startswith(k + '.')), None)
        if target:
            raise ValueError(
                f'--cfg-options {key}: `{key.split(".")[0]}` is built from the '
                f'CTTA keys and would be overwritten; set {target} instead '
                '(e.g. ctta_stream.dataloader.dataset.data_root=DIR).')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if launcher != 'none':
        configure_dist(cfg)
    for key in ('ctta_stream', 'ctta_method'):
        if not cfg.get(key):
            raise ValueError(
                f'{config} declares no `{key}`: a CTTA config needs `ctta_stream` '
                '(domains, rounds, dataloader) and `ctta_method`; inherit a stream '
                'from configs/_base_/streams and a method from '
                'configs/_base_/methods.')
    stream = cfg.ctta_stream
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    cfg.load_from = None
    cfg.resume = False
    cfg.test_dataloader = stream.dataloader
    cfg.test_evaluator = cfg.get('ctta_evaluator',
                                 dict(type='CTTAIoUMetric', iou_metrics=['mIoU']))
    test_cfg = dict(cfg.get('ctta_cfg', {}) or {})
    test_cfg.update(
        type='CTTALoop',
        # The method's default optimiser filled in: what the run uses.
        method=resolve_method_cfg(cfg.ctta_method),
        domains=stream.domains,
        rounds=stream.get('rounds', 1),
        tta_pipeline=stream.get('tta_pipeline'),
        plain_view_index=stream.get('plain_view_index'),
        checkpoint=checkpoint,
        resume=resume,
        resume_force=force)
    if out_preds is not None:
        test_cfg['out_preds'] = out_preds
    cfg.test_cfg = test_cfg
    if seed is not None:
        randomness = dict(cfg.get('randomness', {}) or {})
        randomness['seed'] = seed
        cfg.randomness = randomness
    return cfg


def build_ctta_runner(cfg: Config) -> Runner:
    """The mmengine ``Runner`` of a prepared CTTA config.

    With ``cfg.launcher='pytorch'`` on a machine without CUDA the gloo process
    group is started first (:func:`init_dist_cpu`; mmengine's own start-up
    needs CUDA); with CUDA mmengine starts it (NCCL, device ``LOCAL_RANK``).
    """
    check_writable_dir(cfg.work_dir)
    init_dist_cpu(cfg.get('launcher', 'none'),
                  (cfg.get('env_cfg') or {}).get('dist_cfg'))
    return Runner.from_cfg(cfg)


def run_ctta(cfg: Config) -> Dict[str, float]:
    """Build the runner and run the stream; returns the summary metrics. On
    several processes the ranks then leave the process group together."""
    metrics = build_ctta_runner(cfg).test()
    end_distributed()
    return metrics
