"""Load a source checkpoint into a CTTA model, refusing one that does not fit."""
from typing import Dict

import torch
import torch.nn as nn
from mmengine.runner.checkpoint import _load_checkpoint


def _strip(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}


def load_source_checkpoint(model: nn.Module, path: str) -> Dict:
    """Load ``path`` into ``model``; only adapter keys may be missing.

    Args:
        model (nn.Module): The segmentor (unwrapped).
        path (str): An mmseg checkpoint (``state_dict`` and optional ``meta``).

    Returns:
        dict: The checkpoint's ``meta`` (empty if none).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: keys or shapes do not fit the model (the message lists the
            first few and the class counts when the classifier is the culprit).
    """
    import os.path as osp
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    ckpt = _load_checkpoint(path, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path}: not a checkpoint dict')
    state = _strip(ckpt.get('state_dict', ckpt))
    own = model.state_dict()
    missing = [k for k in own if k not in state and '.adapter.' not in k]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in state
                 if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    cls_keys = [k for k in shape_bad if 'conv_seg' in k or 'linear_pred' in k]
    if cls_keys:
        k = cls_keys[0]
        raise ValueError(
            f'{path}: class-count mismatch: the checkpoint classifier `{k}` has '
            f'{state[k].shape[0]} classes, the model {own[k].shape[0]} '
            '(model.decode_head.num_classes must equal the dataset classes).')
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append(f'{len(missing)} model keys missing from the file, e.g. '
                         f'{missing[:5]}')
        if unexpected:
            parts.append(f'{len(unexpected)} file keys the model lacks, e.g. '
                         f'{unexpected[:5]}')
        if shape_bad:
            parts.append('shape mismatches, e.g. ' + ', '.join(
                f'{k}: file {tuple(state[k].shape)} vs model '
                f'{tuple(own[k].shape)}' for k in shape_bad[:5]))
        raise ValueError(f'{path} does not fit the model: ' + '; '.join(parts) +
                         '. Check that the config matches the checkpoint '
                         '(backbone variant, head type, number of classes).')
    model.load_state_dict(state, strict=False)
    return ckpt.get('meta', {}) or {}
