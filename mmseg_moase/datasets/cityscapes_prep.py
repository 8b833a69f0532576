"""Cityscapes train-id labels: find the missing ones and create them.

mmseg's ``CityscapesDataset`` reads ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``
(19 train ids, 255 = ignore). The Cityscapes download does not contain these files:
cityscapesscripts' ``csCreateTrainIdLabelImgs``
(:mod:`cityscapesscripts.preparation.createTrainIdLabelImgs`) draws them from the
``*_gtFine_polygons.json`` annotations of ``gtFine_trainvaltest.zip``. That tool
finds the dataset through the ``CITYSCAPES_DATASET`` environment variable and
converts every ``gtFine/*/*/*_gt*_polygons.json`` (and ``gtCoarse/...``) it finds.

This module wraps it for one data root (:func:`create_train_id_labels`), lists the
images whose label is missing (:func:`find_missing_train_id_labels`) and builds the
error a CTTA stream raises when labels are missing (:func:`missing_labels_error`).
The command-line front end is ``tools/prepare_cityscapes.py``.
"""
import contextlib
import glob
import io
import os
import os.path as osp
from typing import List, Optional, Sequence

IMG_DIR = 'leftImg8bit'
GT_DIR = 'gtFine'
IMG_SUFFIX = '_leftImg8bit.png'
TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
POLYGONS_SUFFIX = '_gtFine_polygons.json'
PREPARE_SCRIPT = 'tools/prepare_cityscapes.py'


def prepare_command(data_root: str) -> str:
    """The shell command that creates the train-id labels of ``data_root``.

    Args:
        data_root (str): The Cityscapes root (holding ``leftImg8bit``, ``gtFine``).

    Returns:
        str: ``python tools/prepare_cityscapes.py <data_root>``.
    """
    return f'python {PREPARE_SCRIPT} {data_root}'


def find_missing_train_id_labels(data_root: str,
                                 split: Optional[str] = None) -> List[str]:
    """Train-id label files that are missing for images of a Cityscapes tree.

    Every ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` needs
    ``gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png``; images are found
    recursively under the split folder.

    Args:
        data_root (str): The Cityscapes root (holding ``leftImg8bit``, ``gtFine``).
        split (str, optional): ``train``, ``val``, ... (any folder under
            ``leftImg8bit``). Defaults to None: every split.

    Returns:
        list[str]: The paths of the missing ``*_gtFine_labelTrainIds.png`` files
        (one per image without its label), sorted by image path; empty when
        every image has its label.

    Raises:
        FileNotFoundError: If ``leftImg8bit/<split>`` (or ``leftImg8bit``) does
            not exist.
    """
    img_root = osp.join(data_root, IMG_DIR)
    top = osp.join(img_root, split) if split else img_root
    if not osp.isdir(top):
        raise FileNotFoundError(
            f'Cityscapes image folder {top} does not exist (expected '
            f'{data_root}/{IMG_DIR}/<split>/<city>/*{IMG_SUFFIX}).')
    images = []
    for dirpath, _, files in os.walk(top):
        images += [osp.join(dirpath, f) for f in files if f.endswith(IMG_SUFFIX)]
    missing = []
    for img in sorted(images):
        rel = osp.relpath(img, img_root)
        label = osp.join(data_root, GT_DIR,
                         rel[:-len(IMG_SUFFIX)] + TRAIN_ID_SUFFIX)
        if not osp.isfile(label):
            missing.append(label)
    return missing


def _polygon_files(data_root: str) -> List[str]:
    """The annotation files ``csCreateTrainIdLabelImgs`` converts (its globs)."""
    files = []
    for gt in ('gtFine', 'gtCoarse'):
        files += sorted(glob.glob(
            osp.join(glob.escape(data_root), gt, '*', '*', '*_gt*_polygons.json')))
    return files


def create_train_id_labels(data_root: str, quiet: bool = True) -> List[str]:
    """Run cityscapesscripts' ``csCreateTrainIdLabelImgs`` on ``data_root``.

    ``CITYSCAPES_DATASET`` is set to ``data_root`` for the call only (the previous
    value, or its absence, is restored afterwards). Every
    ``gtFine/*/*/*_gt*_polygons.json`` (and ``gtCoarse/...``) is converted to the
    ``*_labelTrainIds.png`` beside it; existing label files are overwritten.

    Args:
        data_root (str): The Cityscapes root (holding ``gtFine``).
        quiet (bool): Hide the converter's progress output. Defaults to True.

    Returns:
        list[str]: The label files written.

    Raises:
        FileNotFoundError: If ``data_root`` has no ``*_polygons.json`` files
            (the label sources are not there either).
        RuntimeError: If the converter fails (it exits on unknown labels).
    """
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'Cityscapes root {data_root} does not exist.')
    sources = _polygon_files(data_root)
    if not sources:
        raise FileNotFoundError(
            f'no polygon annotations ({GT_DIR}/<split>/<city>/*{POLYGONS_SUFFIX})'
            f' under {data_root}: csCreateTrainIdLabelImgs draws the '
            f'*{TRAIN_ID_SUFFIX} files from them. Download gtFine_trainvaltest.zip'
            ' from https://www.cityscapes-dataset.com and unpack it into '
            f'{data_root} (giving {osp.join(data_root, GT_DIR, "val")}/...), then '
            f'run `{prepare_command(data_root)}` again.')
    from cityscapesscripts.preparation.createTrainIdLabelImgs import \
        main as cs_create_train_id_label_imgs

    key = 'CITYSCAPES_DATASET'
    old = os.environ.get(key)
    os.environ[key] = osp.abspath(data_root)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out) if quiet else \
                contextlib.nullcontext():
            cs_create_train_id_label_imgs()
    except SystemExit as e:  # cityscapesscripts' printError calls sys.exit
        raise RuntimeError(
            f'csCreateTrainIdLabelImgs failed on {data_root} (exit code '
            f'{e.code}): {out.getvalue().strip()[-500:]}') from None
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    return [f.replace('_polygons.json', '_labelTrainIds.png') for f in sources]


def _cityscapes_root(label_path: str) -> Optional[str]:
    """``<root>`` of ``<root>/gtFine/<split>/<city>/<file>``, else None."""
    gt_dir = osp.dirname(osp.dirname(osp.dirname(label_path)))
    if osp.basename(gt_dir) != GT_DIR:
        return None
    return osp.dirname(gt_dir) or '.'


def missing_labels_error(domain: str, missing: Sequence[str],
                         data_root: str = '') -> FileNotFoundError:
    """The error for a stream domain whose images lack label files.

    For Cityscapes train-id labels (``*_gtFine_labelTrainIds.png``) the message
    says how to create them: ``python tools/prepare_cityscapes.py DATA_ROOT`` (or
    ``CITYSCAPES_DATASET=DATA_ROOT csCreateTrainIdLabelImgs``), or, when the
    polygon annotations are missing too, where to get them.

    Args:
        domain (str): The domain name.
        missing (Sequence[str]): The missing label paths, in image order.
        data_root (str): The domain's ``data_root`` (used when the Cityscapes
            root cannot be read from the label path).

    Returns:
        FileNotFoundError: The error to raise (one line: the count, the first
        missing file and the fix).
    """
    first = missing[0]
    msg = (f"domain '{domain}': {len(missing)} image(s) have no label file, "
           f'first missing: {first}. Every image needs its label to be scored.')
    if first.endswith(TRAIN_ID_SUFFIX):
        root = _cityscapes_root(first) or data_root or '.'
        polygons = first[:-len(TRAIN_ID_SUFFIX)] + POLYGONS_SUFFIX
        msg += (f' Cityscapes *{TRAIN_ID_SUFFIX} files are made from the '
                f'*{POLYGONS_SUFFIX} annotations: run `{prepare_command(root)}` '
                f'(or `CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs`).')
        if not osp.isfile(polygons):
            msg += (f' The polygon file {polygons} is missing too: unpack '
                    f'gtFine_trainvaltest.zip (cityscapes-dataset.com) into {root}'
                    ' first.')
    return FileNotFoundError(msg)
