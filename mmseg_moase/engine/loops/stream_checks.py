"""Bad data: a model head for another class count than the stream's, and in
the middle of a stream labels that do not fit their images or the classes,
and images that do not load, named with their domain and file."""
from typing import Any, List, Mapping

import torch.nn as nn
from mmengine.logging import print_log

from ...utils.dist import raise_rank_errors
from .run_state import StreamInterrupted


class StreamDataError(ValueError):
    """Bad data met in the middle of a stream (the state is saved first)."""


def check_classes(model: nn.Module, datasets: Mapping[str, Any]) -> None:
    """The model head's class count equals every domain's."""
    head = getattr(model, 'decode_head', None)
    n_model = getattr(head, 'num_classes', None)
    for name, ds in datasets.items():
        n_data = len(ds.metainfo.get('classes', ()))
        if n_model is not None and n_data and n_model != n_data:
            raise ValueError(
                f"class-count mismatch: domain '{name}' has {n_data} classes, "
                f'the model head {n_model}. Use a checkpoint/config trained on '
                'the same label set.')


def check_batch_labels(data_batch: dict, domain: str, dataset: Any) -> None:
    """Every label of the batch has its image's size and known values."""
    samples = data_batch['data_samples']
    if samples and isinstance(samples[0], (list, tuple)):
        samples = samples[0]
    n_cls = len(dataset.metainfo.get('classes', ()))
    ignore = getattr(dataset, 'ignore_index', 255)
    for s in samples:
        if 'gt_sem_seg' not in s:
            continue
        gt = s.gt_sem_seg.data
        path = s.metainfo.get('seg_map_path', s.metainfo.get('img_path'))
        ori = tuple(s.metainfo.get('ori_shape', gt.shape[-2:]))
        if tuple(gt.shape[-2:]) != ori:
            raise StreamDataError(
                f"domain '{domain}': label {path} is {tuple(gt.shape[-2:])} "
                f'but its image is {ori} (H, W); labels must match images.')
        values = gt.unique()
        bad = values[(values >= n_cls) & (values != ignore)]
        if bad.numel():
            raise StreamDataError(
                f"domain '{domain}': label {path} has values "
                f'{bad.tolist()[:10]} outside 0..{n_cls - 1} and {ignore}; '
                'use *_labelTrainIds.png files (cityscapesscripts '
                'csCreateTrainIdLabelImgs makes them).')


def load_error(e: BaseException, name: str, dataset: Any, done: int,
               n_local: int, batch_size: int) -> BaseException:
    """An exception from loading the next batch, as a
    :class:`StreamDataError` naming the domain and the image files (an
    unreadable image gets the bad label's treatment)."""
    if isinstance(e, StopIteration) or not n_local:
        return e
    paths = []
    for i in range(done, min(done + batch_size, len(dataset))):
        try:
            paths.append(dataset.get_data_info(i)['img_path'])
        except Exception:  # noqa: BLE001
            break
    text = str(e).strip()
    first = text.splitlines()[-1] if text else ''
    return StreamDataError(
        f"domain '{name}': loading image {done} of the pass failed "
        f'({type(e).__name__}: {first}); file(s): {paths}.')


def raise_batch_error(error: BaseException, failures: List, done: int,
                      label: str, state_path: str) -> None:
    """Raise what stopped the stream at image ``done`` of pass ``label``, its
    state already saved to ``state_path``: an interruption exits with
    128 + the signal, bad data is a :class:`StreamDataError` saying how to
    go on, anything else (on any rank) is raised on every rank."""
    if isinstance(error, StreamInterrupted):
        print_log(f'{error} at image {done} of {label}: the state is saved '
                  f'to {state_path}; run the same command with --resume to '
                  'continue.', logger='current', level=40)
        raise SystemExit(128 + error.signum)
    if isinstance(error, StreamDataError):
        raise StreamDataError(
            f'{error} Progress up to image {done} of this pass is saved: '
            'fix the data and re-run with --resume.') from None
    raise_rank_errors(error, failures, f'at image {done} of {label}')
