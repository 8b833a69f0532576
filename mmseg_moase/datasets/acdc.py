"""ACDC (Adverse Conditions Dataset with Correspondences) for mmsegmentation 1.x."""
import os.path as osp
from typing import List, Optional

import mmengine.fileio as fileio
from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class ACDCDataset(BaseSegDataset):
    """ACDC: Cityscapes' 19 classes under fog, night, rain and snow.

    Expected layout (as shipped, or as written by
    :func:`mmseg_moase.datasets.synthetic_city.generate_synthetic_city`)::

        data_root/
            rgb_anon/<condition>/<split>/<sequence>/<name>_rgb_anon.png
            rgb_anon/<condition>/<split>_ref/<sequence>/<name>_ref_anon.png
            gt/<condition>/<split>/<sequence>/<name>_gt_labelTrainIds.png

    with conditions ``fog``, ``night``, ``rain``, ``snow`` and splits ``train``,
    ``val``, ``test``. One condition and split is chosen through ``data_prefix``.
    Images are listed recursively in sorted path order. Reference images
    (clear-weather counterparts: any file in a ``ref`` or ``*_ref`` folder, or
    named ``*_ref_anon.png``) are skipped.

    The ``test`` split has no public labels: pass ``seg_map_path=None`` (or
    ``''``) in ``data_prefix`` to load images only, e.g. to export predictions,
    and leave ``LoadAnnotations`` out of the pipeline. When a label folder is
    given, every image must have its label file.

    Args:
        data_prefix: ``dict(img_path=..., seg_map_path=...)`` relative to
            ``data_root``. Defaults to the fog training split.
        img_suffix: Image file suffix. Defaults to ``'_rgb_anon.png'``.
        seg_map_suffix: Label file suffix. Defaults to
            ``'_gt_labelTrainIds.png'`` (train ids, 255 = ignore).
        **kwargs: Any other argument of
            :class:`mmseg.datasets.BaseSegDataset` (``data_root``,
            ``pipeline``, ``test_mode``, ``indices``, ...).

    Raises:
        FileNotFoundError: If the image folder does not exist, or a label file
            is missing while ``seg_map_path`` is set.

    Example:
        >>> ds = ACDCDataset(
        ...     data_root='data/acdc',
        ...     data_prefix=dict(img_path='rgb_anon/night/val',
        ...                      seg_map_path='gt/night/val'),
        ...     pipeline=[dict(type='LoadImageFromFile'),
        ...               dict(type='LoadAnnotations'),
        ...               dict(type='PackSegInputs')])
    """
    METAINFO = CityscapesDataset.METAINFO
    CONDITIONS = ('fog', 'night', 'rain', 'snow')
    REF_SUFFIX = '_ref_anon.png'

    def __init__(self,
                 data_prefix: Optional[dict] = None,
                 img_suffix: str = '_rgb_anon.png',
                 seg_map_suffix: str = '_gt_labelTrainIds.png',
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='rgb_anon/fog/train',
                               seg_map_path='gt/fog/train')
        data_prefix = dict(data_prefix)
        # mmengine joins every prefix with data_root and rejects None, so an
        # unlabelled split simply has no seg_map_path entry.
        self.has_labels = bool(data_prefix.get('seg_map_path'))
        if not self.has_labels:
            data_prefix.pop('seg_map_path', None)
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            data_prefix=data_prefix,
            **kwargs)

    @classmethod
    def is_reference(cls, rel_path: str) -> bool:
        """Whether an image path (relative to the image folder) is a reference
        image: in a ``ref``/``*_ref`` folder or named ``*_ref_anon.png``."""
        parts = rel_path.replace('\\', '/').split('/')
        return (parts[-1].endswith(cls.REF_SUFFIX)
                or any(p == 'ref' or p.endswith('_ref') for p in parts[:-1]))

    def list_images(self) -> List[dict]:
        """The images of the chosen condition and split with the paths of
        their labels, reference images skipped; the label files are not
        checked (:meth:`load_data_list` checks them).

        Returns:
            list[dict]: One info dict per image, sorted by image path.

        Raises:
            FileNotFoundError: The image folder does not exist.
        """
        img_dir = self.data_prefix.get('img_path', '')
        if not self.ann_file and not fileio.isdir(
                img_dir, backend_args=self.backend_args):
            raise FileNotFoundError(f'ACDC image folder {img_dir!r} not found')
        return [
            info for info in super().load_data_list()
            if not self.is_reference(osp.relpath(info['img_path'], img_dir))
        ]

    def load_data_list(self) -> List[dict]:
        """List the images (and labels) of the chosen condition and split.

        Returns:
            list[dict]: One info dict per image, sorted by image path.

        Raises:
            FileNotFoundError: The image folder does not exist, or a label
                file is missing while ``seg_map_path`` is set.
        """
        data_list = self.list_images()
        if self.has_labels:
            for info in data_list:
                if not fileio.exists(
                        info['seg_map_path'], backend_args=self.backend_args):
                    raise FileNotFoundError(
                        f'label {info["seg_map_path"]!r} of image '
                        f'{info["img_path"]!r} not found; ACDC ships the '
                        f'*{self.seg_map_suffix} files in gt_trainval.zip: '
                        f'unpack it into {self.data_root or "<data_root>"} '
                        'next to rgb_anon/ (for a split without labels, '
                        'ACDC test, set data_prefix.seg_map_path=None)')
        return data_list
