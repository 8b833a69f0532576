"""Check the data of a CTTA stream before a long run: images and their labels.

    python tools/check_data.py CONFIG [--cfg-options k=v ...] [--show N]

For every domain of the config's ``ctta_stream`` (or the ``test_dataloader`` of
an mmseg config without one) the tool lists the images exactly as the dataset
class does (same folders, suffixes, sorted order; ACDC reference images skipped),
checks that each image has its label file and prints a table::

    domain  images  labels  missing  image folder
    fog        400     400        0  data/acdc/rgb_anon/fog/train

It exits 0 when every domain has images and every image its label, 1 otherwise
(the message lists the first missing paths and their count), 2 when the config
cannot be read. The model is not built and no image is decoded. Data elsewhere:
``--cfg-options ctta_stream.dataloader.dataset.data_root=/path/to/acdc``.
"""
import argparse
import copy
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401  (registers ACDCDataset)
from mmseg_moase.datasets.acdc import ACDCDataset  # noqa: E402

#: Label suffixes written by cityscapesscripts' ``csCreateTrainIdLabelImgs``.
TRAIN_ID_SUFFIX = 'labelTrainIds.png'
CS_HINT = ("the *_labelTrainIds.png files are made from Cityscapes' *_labelIds.png "
           "by cityscapesscripts: CITYSCAPES_DATASET={root} "
           'csCreateTrainIdLabelImgs')
ACDC_HINT = ('ACDC ships *_gt_labelTrainIds.png in gt_trainval.zip; unpack it '
             'into {root} next to rgb_anon/')


@dataclass
class DomainReport:
    """What was found for one domain.

    Attributes:
        name (str): Domain name.
        img_dir (str): The image folder.
        seg_dir (str, optional): The label folder (None: images only).
        images (int): Images listed.
        labels (int): Images whose label file exists.
        missing (list[str]): Label files that do not exist.
        problem (str, optional): A domain-level problem (no folder, no images).
        hint (str, optional): How to make the missing labels.
    """
    name: str
    img_dir: str
    seg_dir: Optional[str]
    images: int = 0
    labels: int = 0
    missing: List[str] = field(default_factory=list)
    problem: Optional[str] = None
    hint: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.missing


def stream_domains(cfg: Config) -> List[Dict[str, Any]]:
    """Per domain ``dict(name, dataset, root_option)``, dataset over the template.

    Uses ``ctta_stream`` as ``CTTALoop`` does (every domain's ``dataset`` updates
    a copy of ``ctta_stream.dataloader.dataset``); a config without one gives its
    ``test_dataloader.dataset`` as the single domain ``test``. ``root_option`` is
    the ``--cfg-options`` key that moves the domain's data root (None when each
    domain sets its own).

    Raises:
        ValueError: the config has neither.
    """
    stream = cfg.get('ctta_stream')
    if stream:
        template = stream.get('dataloader', {}).get('dataset', {})
        domains = []
        for d in stream.get('domains', []):
            ds = copy.deepcopy(dict(template))
            ds.update(copy.deepcopy(dict(d['dataset'])))
            root_option = None
            if 'data_root' in template and 'data_root' not in d['dataset']:
                root_option = 'ctta_stream.dataloader.dataset.data_root'
            domains.append(dict(name=d['name'], dataset=ds,
                                root_option=root_option))
        if not domains:
            raise ValueError('ctta_stream.domains is empty')
        return domains
    loader = cfg.get('test_dataloader')
    if loader and loader.get('dataset'):
        return [dict(name='test', dataset=copy.deepcopy(dict(loader['dataset'])),
                     root_option='test_dataloader.dataset.data_root')]
    raise ValueError('the config has no `ctta_stream` and no `test_dataloader`')


def _list_images(dataset) -> List[dict]:
    """The dataset's image list without building it (no label check)."""
    from mmseg.datasets import BaseSegDataset
    own = type(dataset).load_data_list
    if isinstance(dataset, BaseSegDataset) and own in (
            BaseSegDataset.load_data_list, ACDCDataset.load_data_list):
        # ACDCDataset = BaseSegDataset's listing minus reference images, plus a
        # label check that stops at the first missing file: list, count here.
        data_list = BaseSegDataset.load_data_list(dataset)
        if isinstance(dataset, ACDCDataset):
            img_dir = dataset.data_prefix.get('img_path', '')
            data_list = [
                d for d in data_list
                if not dataset.is_reference(osp.relpath(d['img_path'], img_dir))
            ]
        return data_list
    return dataset.load_data_list()


def _hint(dataset, cfg: dict) -> Optional[str]:
    root = cfg.get('data_root') or '<data_root>'
    suffix = getattr(dataset, 'seg_map_suffix', '')
    if isinstance(dataset, ACDCDataset):
        return ACDC_HINT.format(root=root)
    if suffix.endswith(TRAIN_ID_SUFFIX):
        return CS_HINT.format(root=root)
    return None


def check_domain(name: str, dataset_cfg: dict,
                 root_option: Optional[str] = None) -> DomainReport:
    """List one domain's images and check their labels.

    Args:
        name (str): Domain name.
        dataset_cfg (dict): The domain's dataset config (merged).
        root_option (str, optional): The ``--cfg-options`` key that sets this
            domain's data root, named in the message when its folder is missing.

    Returns:
        DomainReport: Counts, missing labels and problems.
    """
    from mmseg.registry import DATASETS
    cfg = copy.deepcopy(dataset_cfg)
    cfg['lazy_init'] = True
    cfg['pipeline'] = []  # nothing is loaded; no transform needs building
    root = cfg.get('data_root', '') or ''
    prefix = cfg.get('data_prefix', {}) or {}
    img_dir = osp.join(root, prefix.get('img_path', '') or '')
    seg = prefix.get('seg_map_path')
    report = DomainReport(name, img_dir, osp.join(root, seg) if seg else None)
    if not cfg.get('ann_file') and not osp.isdir(img_dir):
        report.problem = (f'image folder {img_dir} does not exist (data_root='
                          f"{root!r}, data_prefix={dict(prefix)})")
        if root_option:
            report.problem += (f'; data elsewhere: --cfg-options {root_option}='
                               '/path/to/data')
        return report
    dataset = DATASETS.build(cfg)
    data_list = _list_images(dataset)
    report.images = len(data_list)
    if not data_list:
        report.problem = (f"no images matching '*{getattr(dataset, 'img_suffix', '')}"
                          f"' under {img_dir}")
        return report
    for info in data_list:
        path = info.get('seg_map_path')
        if path is None:
            continue
        if osp.isfile(path):
            report.labels += 1
        else:
            report.missing.append(path)
    if report.missing:
        report.hint = _hint(dataset, cfg)
    return report


def format_table(reports: Sequence[DomainReport]) -> str:
    """The domain / images / labels / missing table."""
    rows = [('domain', 'images', 'labels', 'missing', 'image folder')]
    for r in reports:
        labels = str(r.labels) if r.seg_dir else '-'
        missing = str(len(r.missing)) if r.seg_dir else '-'
        rows.append((r.name, str(r.images), labels, missing, r.img_dir))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            row[i].rjust(widths[i]) for i in (1, 2, 3)]
        lines.append('  '.join(cells + [row[4]]))
    return '\n'.join(lines)


def format_problems(reports: Sequence[DomainReport], show: int = 5) -> str:
    """What is wrong, per domain: the first ``show`` missing paths and the count."""
    lines = []
    for r in reports:
        if r.problem:
            lines.append(f"domain '{r.name}': {r.problem}")
        if r.missing:
            lines.append(f"domain '{r.name}': {len(r.missing)} of {r.images} "
                         f'images have no label file, e.g.:')
            lines += [f'    {p}' for p in r.missing[:show]]
            if len(r.missing) > show:
                lines.append(f'    ... and {len(r.missing) - show} more')
            if r.hint:
                lines.append(f'  hint: {r.hint}')
    return '\n'.join(lines)


def check_config(config: str, cfg_options: Optional[dict] = None
                 ) -> List[DomainReport]:
    """Load ``config`` (and ``cfg_options``) and check every domain's data.

    Raises:
        FileNotFoundError: ``config`` does not exist.
        ValueError: the config declares no data.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return [check_domain(d['name'], d['dataset'], d.get('root_option'))
            for d in stream_domains(cfg)]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Check that every image of a CTTA stream has its label')
    parser.add_argument('config', help='CTTA config (with ctta_stream)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'ctta_stream.dataloader.dataset.data_root=/data/acdc')
    parser.add_argument('--show', type=int, default=5,
                        help='missing paths to list per domain (default 5)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 data missing, 2 bad config)."""
    args = parse_args(argv)
    try:
        reports = check_config(args.config, args.cfg_options)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_table(reports))
    bad = [r for r in reports if not r.ok]
    if bad:
        print(f'\nerror: the data of {len(bad)} of {len(reports)} domain(s) is '
              'incomplete; fix it before the run:\n' +
              format_problems(bad, args.show), file=sys.stderr)
        return 1
    total = sum(r.images for r in reports)
    print(f'ok: {len(reports)} domain(s), {total} images, every image has its '
          'label')
    return 0


if __name__ == '__main__':
    sys.exit(main())
