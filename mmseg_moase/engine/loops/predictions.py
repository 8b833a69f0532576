"""Write predictions as Cityscapes label-ID PNGs (what the benchmark servers take)."""
import os
import os.path as osp
from typing import Sequence

import numpy as np
from PIL import Image

from mmseg.structures import SegDataSample


def train_id_to_label_id_lut() -> np.ndarray:
    """256-entry lookup table: Cityscapes train id -> label id (255 -> 0)."""
    from cityscapesscripts.helpers.labels import trainId2label
    lut = np.zeros(256, np.uint8)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < 255:
            lut[train_id] = label.id
    return lut


_LUT = None


def save_predictions(samples: Sequence[SegDataSample], out_dir: str,
                     round_idx: int, domain: str, dataset,
                     color: bool = False) -> None:
    """Save each prediction under ``out_dir/round<k>/<domain>/<relative path>``.

    The relative path is the image's path under the dataset's image folder, with
    the extension changed to ``.png``; with ``color`` a palette PNG goes to the same
    place under ``out_dir/color/``. 19-class (Cityscapes) predictions are written as
    label ids (``labelIds``), other label sets as train ids.
    """
    global _LUT
    img_root = dataset.data_prefix.get('img_path', '')
    palette = np.asarray(dataset.metainfo.get('palette', []), np.uint8)
    n_cls = len(dataset.metainfo.get('classes', ()))
    for s in samples:
        pred = s.pred_sem_seg.data.squeeze(0).cpu().numpy().astype(np.uint8)
        rel = osp.relpath(s.metainfo['img_path'], img_root)
        rel = osp.splitext(rel)[0] + '.png'
        path = osp.join(out_dir, f'round{round_idx + 1}', domain, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        if n_cls == 19:
            if _LUT is None:
                _LUT = train_id_to_label_id_lut()
            Image.fromarray(_LUT[pred]).save(path)
        else:
            Image.fromarray(pred).save(path)
        if color and len(palette):
            cpath = osp.join(out_dir, 'color', f'round{round_idx + 1}', domain,
                             rel)
            os.makedirs(osp.dirname(cpath), exist_ok=True)
            img = Image.fromarray(pred, mode='P')
            img.putpalette(palette.flatten().tolist())
            img.save(cpath)
