"""Each domain's data for the CTTA loop: the dataset (its folders and label
files checked on disk first, each error naming the path and the fix), the
dataloader of one pass from its resume position, and the pass's evaluator."""
import copy
import os.path as osp
from typing import Any, Optional

import torch

from mmseg.registry import DATASETS
from ...datasets.cityscapes_prep import missing_labels_error
from ...utils.dist import is_distributed


def domain_dataset_cfg(dataloader_cfg: dict, domain: dict) -> dict:
    """The dataset config of ``domain``: its ``dataset`` merged over a copy
    of the stream dataloader's (the template's)."""
    cfg = copy.deepcopy(dict(dataloader_cfg.get('dataset', {})))
    cfg.update(copy.deepcopy(dict(domain['dataset'])))
    return cfg


def build_domain_dataset(dataloader_cfg: dict, domain: dict,
                         tta_pipeline: Optional[list], multi_view: bool,
                         method_name: str) -> Any:
    """The dataset of ``domain`` (its ``dataset`` merged over the template's),
    with the multi-view ``tta_pipeline`` for a multi-view method.

    Raises:
        ValueError: A multi-view method without ``tta_pipeline``; a domain
            without images.
        FileNotFoundError: The image folder does not exist; labels are missing.
    """
    cfg = domain_dataset_cfg(dataloader_cfg, domain)
    if multi_view:
        if not tta_pipeline:
            raise ValueError(
                f'{method_name} uses the multi-view teacher but the stream '
                'declares no `tta_pipeline` (ctta_stream.tta_pipeline in the '
                'config).')
        cfg['pipeline'] = copy.deepcopy(tta_pipeline)
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


def build_pass_loader(runner, dataloader_cfg: dict, dataset: Any,
                      start: int) -> Any:
    """The dataloader of one pass over ``dataset`` from image ``start``
    (:class:`StreamSampler`). A private generator keeps the global RNG
    (stochastic restore) untouched by the DataLoader, so a resumed run draws
    exactly the same numbers."""
    loader_cfg = copy.deepcopy(dataloader_cfg)
    loader_cfg['dataset'] = dataset
    loader_cfg['sampler'] = dict(type='StreamSampler', start=start,
                                 batch_size=dataloader_cfg.get('batch_size', 1))
    loader_cfg['generator'] = torch.Generator()
    return runner.build_dataloader(loader_cfg, seed=runner.seed)


def build_pass_evaluator(runner, evaluator_cfg: Any, dataset: Any,
                         collect_dir: str) -> Any:
    """An evaluator of the config for one pass over ``dataset``; on several
    processes its CPU-collected metrics gather through
    ``<work_dir>/<collect_dir>`` (not mmengine's ./.dist_test)."""
    evaluator = runner.build_evaluator(copy.deepcopy(evaluator_cfg))
    evaluator.dataset_meta = dataset.metainfo
    if is_distributed():
        for metric in evaluator.metrics:
            if getattr(metric, 'collect_device', None) == 'cpu' and \
                    getattr(metric, 'collect_dir', None) is None:
                metric.collect_dir = osp.join(runner.work_dir, collect_dir)
    return evaluator
