"""The benchmark's trainings from scratch or from the source model: the
source model (mmengine's ``Runner.train()``; the source config trains the same
model with mmseg's own ``tools/train.py``) scored on the clean val set, and
ViDA's adapter warm-up; the shared pieces of a training that starts from the
source model (its loss, its timed run, the saved summaries a second call
reuses), which the Oracle's fine-tuning (:mod:`.oracle`) uses too."""
import json
import os.path as osp
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'synthetic')
SOURCE_CONFIG = osp.join(CONFIG_DIR, 'segformer_mit-b0_synthetic-source_128x256.py')
#: ViDA starts from adapters warmed up on the source set (the released models
#: do); the warm-up is a stage, shared by every protocol like the source model.
VIDA_WARMUP_CONFIG = osp.join(CONFIG_DIR,
                              'vida-warmup_mit-b0_synthetic-source_128x256.py')


def _log(msg: str) -> None:
    print(f'[benchmark] {msg}', flush=True)



def class_balance_weights(label_dir: str, num_classes: int = 19,
                          power: float = 0.5, clip: float = 10.0) -> List[float]:
    """Cross-entropy class weights ``(median_freq / freq_c) ** power``.

    Median-frequency balancing (Eigen & Fergus 2015) over the training labels,
    softened by ``power`` and clipped to [1/clip, clip]; classes absent from the
    training labels get weight 1. Small classes (poles, signs, persons) cover well
    under 1% of the pixels and are otherwise never predicted after a short
    from-scratch training.
    """
    import glob

    import numpy as np
    from PIL import Image
    counts = np.zeros(256, np.float64)
    files = sorted(glob.glob(osp.join(label_dir, '**', '*_labelTrainIds.png'),
                             recursive=True))
    if not files:
        raise FileNotFoundError(f'no *_labelTrainIds.png under {label_dir}')
    for f in files:
        counts += np.bincount(np.asarray(Image.open(f)).ravel(), minlength=256)
    freq = counts[:num_classes] / counts[:num_classes].sum()
    present = freq > 0
    median = np.median(freq[present])
    weights = np.ones(num_classes)
    weights[present] = np.clip((median / freq[present])**power, 1 / clip, clip)
    return [round(float(w), 4) for w in weights]


def _saved_summary(path: str) -> Optional[Dict]:
    """A stage's summary JSON if the stage ran before and its checkpoint exists."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if osp.isfile(summary['checkpoint']) else None


def _write_summary(path: str, summary: Dict) -> None:
    with open(path, 'w') as f:
        json.dump(summary, f, indent=2)


def train_source(data_root: str, work_dir: str, max_iters: Optional[int] = None,
                 batch_size: Optional[int] = None,
                 source_config: str = SOURCE_CONFIG) -> Dict:
    """Train (or reuse) the source model; returns checkpoint path and clean mIoU."""
    summary_path = osp.join(work_dir, 'source_model.json')
    summary = _saved_summary(summary_path)
    if summary is not None:
        _log(f'source model exists: {summary["checkpoint"]} (clean val mIoU '
             f'{summary["clean_val_mIoU"]:.2f}); delete {work_dir} to retrain')
        return summary
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(source_config)
    cfg.work_dir = work_dir
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root
    if max_iters is not None:
        from mmseg_moase.apis.warmup import shorten_schedule
        shorten_schedule(cfg, max_iters)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    weights = class_balance_weights(
        osp.join(data_root, cfg.train_dataloader.dataset.data_prefix.seg_map_path))
    if list(cfg.model.decode_head.loss_decode.get('class_weight', [])) != \
            weights:
        # Another data set than the config's (its weights are for the default
        # one): the same recipe, with weights of the labels trained on.
        _log(f'class weights of {data_root} differ from the source config\'s; '
             'training with those of the data')
        cfg.model.decode_head.loss_decode = dict(
            type='WeightedCrossEntropyLoss', class_weight=weights)
    iters = cfg.train_cfg.max_iters
    _log(f'training the source model: SegFormer MiT-B0 from scratch, {iters} '
         f'iterations of batch {cfg.train_dataloader.batch_size} -> {work_dir}')
    t0 = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_s = time.perf_counter() - t0
    metrics = runner.val_loop.run() if runner.val_loop else {}
    del runner  # ends the persistent training dataloader workers
    ckpt = osp.join(work_dir, f'iter_{iters}.pth')
    summary = dict(checkpoint=ckpt, iterations=iters, class_weight=weights,
                   clean_val_mIoU=float(metrics.get('mIoU', float('nan'))),
                   train_seconds=round(train_s, 1))
    _write_summary(summary_path, summary)
    _log(f'source model: clean val mIoU {summary["clean_val_mIoU"]:.2f} after '
         f'{train_s / 60:.1f} min of training')
    return summary


def warmup_vida(source: Dict, data_root: str, work_dir: str,
                max_iters: Optional[int] = None) -> Dict:
    """ViDA's adapter warm-up (or its reuse): the source model frozen, its
    class weights, ``VIDA_WARMUP_CONFIG``; returns checkpoint and clean mIoU."""
    summary_path = osp.join(work_dir, 'vida_warmup.json')
    summary = _saved_summary(summary_path)
    if summary is not None and \
            summary.get('source_checkpoint') == source['checkpoint']:
        _log(f'ViDA warm-up exists: {summary["checkpoint"]} (clean val '
             f'mIoU {summary["clean_val_mIoU"]:.2f}); delete {work_dir} '
             'to redo it')
        return summary
    from mmseg_moase.apis.warmup import prepare_warmup_config
    opts = {f'{k}.dataset.data_root': data_root
            for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    opts['model.decode_head.loss_decode'] = source_loss_option(source)
    cfg = prepare_warmup_config(VIDA_WARMUP_CONFIG, source['checkpoint'],
                                work_dir, max_iters, cfg_options=opts)
    _log(f'ViDA warm-up: {cfg.train_cfg.max_iters} iterations, adapters only '
         f'-> {work_dir}')
    summary = run_from_source(cfg, source)
    _write_summary(summary_path, summary)
    _log(f'ViDA warm-up: clean val mIoU {summary["clean_val_mIoU"]:.2f} '
         f'(source {source["clean_val_mIoU"]:.2f}) after '
         f'{summary["seconds"] / 60:.1f} min')
    return summary


def source_loss_option(source: Dict) -> Dict:
    """The decode loss of a training that starts from the source model: its
    class-balanced cross-entropy with the source model's class weights."""
    return dict(_delete_=True, type='WeightedCrossEntropyLoss',
                class_weight=source['class_weight'])


def run_from_source(cfg, source: Dict) -> Dict:
    """Run a training prepared by ``prepare_warmup_config`` (the source
    weights through ``SourceWeightsHook``); its summary: checkpoint,
    iterations, source checkpoint, clean val mIoU, seconds."""
    from mmseg_moase.apis.warmup import run_warmup
    t0 = time.perf_counter()
    out = run_warmup(cfg)
    return dict(checkpoint=out['checkpoint'], iterations=out['iterations'],
                source_checkpoint=source['checkpoint'],
                clean_val_mIoU=out['metrics'].get('mIoU', float('nan')),
                seconds=round(time.perf_counter() - t0, 1))
