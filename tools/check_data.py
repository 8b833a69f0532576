"""Check the data of a CTTA stream before a long run: images and their labels.

    python tools/check_data.py CONFIG [--cfg-options k=v ...] [--show N]

For every domain of the config's ``ctta_stream`` (or the ``test_dataloader`` of
an mmseg config without one) the tool builds the domain's dataset with the CTTA
loop's own builder (:func:`~mmseg_moase.engine.loops.domain_data.build_domain_dataset`:
the same folders, suffixes, sorted order, ACDC reference images skipped, the
same checks) and prints a table::

    domain  images  labels  missing  image folder
    fog        400     400        0  data/acdc/rgb_anon/fog/train

Where the loop would refuse a domain, the table counts every image without its
label file, and the message lists the first missing paths and the loop's error
(with its fix). It exits 0 when every domain has images and every image its
label, 1 otherwise, 2 when the config cannot be read. The model is not built
and no image is decoded. Data elsewhere:
``--cfg-options ctta_stream.dataloader.dataset.data_root=/path/to/acdc``.
"""
import argparse
import copy
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401  (registers the datasets and transforms)
from mmseg_moase.apis import prepare_ctta_config  # noqa: E402
from mmseg_moase.engine.loops.domain_data import (  # noqa: E402
    build_domain_dataset, domain_dataset_cfg)

#: The ``--cfg-options`` key of the data root of an mmseg config without
#: ``ctta_stream`` (the loop's errors name the stream's).
PLAIN_ROOT_OPTION = 'test_dataloader.dataset.data_root'


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
        problem (str, optional): A domain-level problem (no folder, no images),
            the CTTA loop's error.
        hint (str, optional): With missing labels, the error the CTTA loop
            stops with (the first missing file and the fix).
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


def stream_data(config: str, cfg_options: Optional[dict] = None
                ) -> Tuple[Dict[str, Any], List[Dict[str, Any]], Optional[str]]:
    """What the CTTA loop builds its domain datasets from.

    A config with ``ctta_stream`` is prepared as ``tools/test_ctta.py``
    prepares it (:func:`~mmseg_moase.apis.prepare_ctta_config`): its
    ``test_dataloader`` (the template) and ``test_cfg.domains``. An mmseg
    config without one gives its ``test_dataloader`` and the single domain
    ``test``.

    Args:
        config (str): The config file.
        cfg_options (dict, optional): ``--cfg-options``, merged first.

    Returns:
        tuple: ``(dataloader template, domains, root option)``; the root
        option is the ``--cfg-options`` key that moves the data of a config
        without ``ctta_stream`` (None for a CTTA config: the loop's errors
        name the stream's keys).

    Raises:
        FileNotFoundError: ``config`` does not exist.
        ValueError: the config declares no data (or ``ctta_stream`` without
            ``ctta_method``).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(config)
    if cfg.get('ctta_stream'):
        cfg = prepare_ctta_config(config, '', cfg_options=cfg_options)
        domains = [copy.deepcopy(dict(d)) for d in cfg.test_cfg['domains']]
        if not domains:
            raise ValueError('ctta_stream.domains is empty')
        root_option = None
    else:
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        loader = cfg.get('test_dataloader')
        if not loader or not loader.get('dataset'):
            raise ValueError(
                'the config has no `ctta_stream` and no `test_dataloader`')
        domains = [dict(name='test', dataset={})]
        root_option = PLAIN_ROOT_OPTION
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return copy.deepcopy(dict(cfg.test_dataloader)), domains, root_option


def _list_data(dataset_cfg: dict) -> List[dict]:
    """The images of a merged domain dataset config and their label paths,
    the label files not checked (``list_images`` where the dataset class has
    one, e.g. :class:`~mmseg_moase.datasets.ACDCDataset`)."""
    from mmseg.registry import DATASETS
    cfg = copy.deepcopy(dataset_cfg)
    cfg['lazy_init'] = True
    cfg['pipeline'] = []  # nothing is loaded; no transform needs building
    dataset = DATASETS.build(cfg)
    return getattr(dataset, 'list_images', dataset.load_data_list)()


def check_domain(dataloader_cfg: dict, domain: dict,
                 root_option: Optional[str] = None) -> DomainReport:
    """Build one domain's dataset as the CTTA loop does and report it.

    Where the loop's builder refuses the domain, its images are listed
    without the label check to count every missing label file.

    Args:
        dataloader_cfg (dict): The dataloader template of the stream.
        domain (dict): ``dict(name=..., dataset=...)``, the dataset merged
            over the template's.
        root_option (str, optional): The ``--cfg-options`` key that sets this
            domain's data root, named in the message when its folder is
            missing (None: the loop's error names it).

    Returns:
        DomainReport: Counts, missing labels and problems.
    """
    # The folders of the table (the builder merges the same way).
    cfg = domain_dataset_cfg(dataloader_cfg, domain)
    root = cfg.get('data_root', '') or ''
    prefix = cfg.get('data_prefix', {}) or {}
    seg = prefix.get('seg_map_path')
    report = DomainReport(domain['name'],
                          osp.join(root, prefix.get('img_path', '') or ''),
                          osp.join(root, seg) if seg else None)
    try:
        dataset = build_domain_dataset(dataloader_cfg, domain, None, False,
                                       'check_data')
    except (FileNotFoundError, ValueError) as error:
        try:
            data_list = _list_data(cfg)
        except (FileNotFoundError, ValueError):
            data_list = []
        labels = [d['seg_map_path'] for d in data_list
                  if d.get('seg_map_path')]
        report.images = len(data_list)
        report.missing = [p for p in labels if not osp.isfile(p)]
        report.labels = len(labels) - len(report.missing)
        if report.missing:
            report.hint = str(error)
        else:
            report.problem = str(error)
            if root_option and not osp.isdir(report.img_dir):
                report.problem += (f' Data elsewhere: --cfg-options '
                                   f'{root_option}=/path/to/data')
        return report
    report.images = len(dataset)
    report.labels = sum(bool(dataset.get_data_info(i).get('seg_map_path'))
                        for i in range(len(dataset)))
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
        if r.problem:  # the loop's error, which names the domain
            lines.append(r.problem)
        if r.missing:
            lines.append(f"domain '{r.name}': {len(r.missing)} of {r.images} "
                         f'images have no label file, e.g.:')
            lines += [f'    {p}' for p in r.missing[:show]]
            if len(r.missing) > show:
                lines.append(f'    ... and {len(r.missing) - show} more')
            if r.hint:
                lines.append(f'  the run stops with: {r.hint}')
    return '\n'.join(lines)


def check_config(config: str, cfg_options: Optional[dict] = None
                 ) -> List[DomainReport]:
    """Load ``config`` (and ``cfg_options``) and check every domain's data.

    Raises:
        FileNotFoundError: ``config`` does not exist.
        ValueError: the config declares no data.
    """
    template, domains, root_option = stream_data(config, cfg_options)
    return [check_domain(template, d, root_option) for d in domains]


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
