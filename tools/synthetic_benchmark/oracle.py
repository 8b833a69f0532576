"""The benchmark's Oracle stage: the source model fine-tuned with the labels of
the oracle split (scenes of every condition that the stream does not show,
:mod:`mmseg_moase.datasets.synthetic_city.oracle_split`).

Its checkpoint is scored on the stream with Source's config (no adaptation),
as the ``Oracle`` row: how much any adaptation could gain. Not a method.
"""
import os.path as osp
from typing import Dict, Optional

from .training import (CONFIG_DIR, _log, _saved_summary, _write_summary,
                     run_from_source, source_loss_option)

ORACLE_CONFIG = osp.join(
    CONFIG_DIR, 'oracle-finetune_mit-b0_synthetic-city2weather-128x256.py')


def train_oracle(source: Dict, data_root: str, work_dir: str,
                 max_iters: Optional[int] = None,
                 num_per_condition: int = 64,
                 oracle_root: Optional[str] = None) -> Dict:
    """Fine-tune (or reuse) the oracle model with ``ORACLE_CONFIG``.

    Writes the oracle split of ``data_root`` when missing, then trains from
    the source checkpoint with the source model's class weights. A finished
    run is reused when it started from the same source checkpoint and split.

    Args:
        source: The source stage's summary (``checkpoint``, ``class_weight``).
        data_root: The benchmark's data set (the split is drawn like it; its
            clean val set scores the oracle model).
        work_dir: Where the fine-tuning writes (``oracle_model.json``, logs,
            checkpoint).
        max_iters: Override the config's training length.
        num_per_condition: Oracle scenes per condition.
        oracle_root: Folder of the split; default ``<data_root>_oracle``.

    Returns:
        ``checkpoint``, ``iterations``, ``source_checkpoint``, ``oracle_data``
        (the split's meta), ``oracle_root``, ``clean_val_mIoU``, ``seconds``.
    """
    from mmseg_moase.apis.warmup import prepare_warmup_config
    from mmseg_moase.datasets.synthetic_city.oracle_split import \
        generate_oracle_split
    split_meta = generate_oracle_split(data_root, oracle_root,
                                       num_per_condition)
    oracle_root = split_meta.pop('out_root')
    split_meta.pop('written')
    summary_path = osp.join(work_dir, 'oracle_model.json')
    summary = _saved_summary(summary_path)
    if (summary is not None
            and summary.get('source_checkpoint') == source['checkpoint']
            and summary.get('oracle_data') == split_meta):
        _log(f'oracle model exists: {summary["checkpoint"]}; delete {work_dir} '
             'to train it again')
        return summary
    opts = {f'{k}.dataset.data_root': data_root
            for k in ('val_dataloader', 'test_dataloader')}
    opts['model.decode_head.loss_decode'] = source_loss_option(source)
    # The warm-up machinery: the source weights through the config's
    # SourceWeightsHook, the schedule cut to max_iters, the clean val score.
    cfg = prepare_warmup_config(ORACLE_CONFIG, source['checkpoint'], work_dir,
                                max_iters, cfg_options=opts)
    for dataset in cfg.train_dataloader.dataset.datasets:
        dataset.data_root = oracle_root
    _log(f'oracle: fine-tuning the source model on {oracle_root} '
         f'({num_per_condition} labelled scenes per condition, none of the '
         f"stream's), {cfg.train_cfg.max_iters} iterations -> {work_dir}")
    summary = dict(run_from_source(cfg, source), oracle_data=split_meta,
                   oracle_root=oracle_root)
    _write_summary(summary_path, summary)
    _log(f'oracle model: clean val mIoU {summary["clean_val_mIoU"]:.2f} '
         f'(source {source["clean_val_mIoU"]:.2f}) after '
         f'{summary["seconds"] / 60:.1f} min')
    return summary
