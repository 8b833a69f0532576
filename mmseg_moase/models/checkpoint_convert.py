"""Convert NVlabs SegFormer checkpoints (mmseg 0.x layout) to mmseg 1.x names.

The entry point :func:`convert_nvlabs_segformer` ties together the three parts of
:mod:`mmseg_moase.models.checkpoints`, whose names this module re-exports:

- :mod:`~mmseg_moase.models.checkpoints.mapping`: the key mapping (NVlabs names and
  shapes to mmseg's MiT and ``SegformerOriginalHead``, the meta, and
  :func:`apply_nvlabs_layernorm_eps` for the original LayerNorm epsilon);
- :mod:`~mmseg_moase.models.checkpoints.layout`: which MiT variant a state dict
  holds, NVlabs vs mmseg layout, and the decode-head family and its markers;
- :mod:`~mmseg_moase.models.checkpoints.checks`: whether a state dict fits a
  config or a built model, and the messages naming the configs to use.

All functions here are pure except :func:`apply_nvlabs_layernorm_eps`, which edits
the module it is given; none reads or writes files.
"""
from typing import Any, Dict, Mapping, Optional, Union

import torch.nn as nn

# Re-exported beyond what convert_nvlabs_segformer uses: the public names
# (``__all__``), the markers and the private helpers keep this module path.
from .checkpoints.checks import (  # noqa: F401
    _cfg_to_dict, _check_config, _mit_defaults, _refuse_layout, _type_name,
    check_converted_fits_model, family_configs, layout_problem)
from .checkpoints.layout import (  # noqa: F401
    MIT_VARIANTS, MMSEG_HEAD_MARKER, MMSEG_MARKER, NVLABS_EXAMPLE_KEYS,
    NVLABS_HEAD_MARKER, NVLABS_MARKER, HeadFamily, MiTArch, _arch_from_keys,
    _as_state_dict, detect_nvlabs_layout, mit_arch, mit_variant,
    segformer_head_family, split_checkpoint, strip_module_prefix)
from .checkpoints.mapping import (  # noqa: F401
    NVLABS_LN_EPS, StateDict, _cityscapes_meta, _convert_block, _convert_meta,
    _convert_state, apply_nvlabs_layernorm_eps)

__all__ = [
    'MIT_VARIANTS', 'HeadFamily', 'MiTArch', 'NVLABS_LN_EPS',
    'apply_nvlabs_layernorm_eps', 'check_converted_fits_model',
    'convert_nvlabs_segformer', 'detect_nvlabs_layout', 'family_configs',
    'layout_problem', 'mit_arch', 'mit_variant', 'segformer_head_family',
    'split_checkpoint', 'strip_module_prefix'
]


def convert_nvlabs_segformer(
        state_dict_or_ckpt: Mapping[str, Any],
        target: Union[nn.Module, Mapping[str, Any], Any, None] = None,
        num_classes: Optional[int] = None) -> Dict[str, Any]:
    """Convert an NVlabs SegFormer checkpoint to mmseg 1.x names.

    Args:
        state_dict_or_ckpt (Mapping[str, Any]): What ``torch.load`` returned for
            an NVlabs file: a checkpoint (weights under ``state_dict``, optional
            ``meta`` with ``CLASSES``/``PALETTE``) or a bare state dict; keys may
            carry DataParallel's ``module.`` prefix.
        target (nn.Module | Mapping | Config, optional): A built segmentor or a
            config (a whole config with ``model``, or the model config) to check
            the file against: the MiT widths and depths, the head type
            (``SegformerOriginalHead``) and width, the class count, and for a
            built model every key and shape (only ``.adapter.`` keys may be
            missing).
        num_classes (int, optional): The class count the file must have.

    Returns:
        dict: ``dict(state_dict=..., meta=...)``. ``meta`` keeps the original meta
        with ``CLASSES``/``PALETTE`` moved to mmengine's
        ``meta['dataset_meta'] = dict(classes=..., palette=...)`` (Cityscapes'
        names and palette when the file has none and 19 classes), plus
        ``converted_from`` and ``mit_variant``.

    Raises:
        ValueError: an unrecognised key layout (the message names the expected
            keys), incomplete stages or blocks, a backbone that does not match
            ``target`` (the message says which variant the file looks like), a
            head that does not fit, or a class-count mismatch (both numbers).

    Example:
        >>> ckpt = torch.load('segformer.b5.1024x1024.city.160k.pth',
        ...                   map_location='cpu', weights_only=True)
        >>> out = convert_nvlabs_segformer(ckpt, target=cfg)
        >>> torch.save(out, 'segformer_b5_city_mmseg1x.pth')
    """
    state, meta = split_checkpoint(state_dict_or_ckpt)
    if not detect_nvlabs_layout(state):
        _refuse_layout(state)
    arch = mit_arch(state)
    file_classes = int(state['decode_head.linear_pred.weight'].shape[0])
    embed = int(state['decode_head.linear_c1.proj.weight'].shape[0])
    if num_classes is not None and num_classes != file_classes:
        raise ValueError(
            f"class-count mismatch: the checkpoint's classifier "
            f'(decode_head.linear_pred) has {file_classes} classes, expected '
            f'{num_classes}')
    if target is not None and not isinstance(target, nn.Module):
        _check_config(target, arch, embed, file_classes)
    converted, _ = _convert_state(state)
    if isinstance(target, nn.Module):
        check_converted_fits_model(converted, target)
    return dict(state_dict=converted,
                meta=_convert_meta(meta, file_classes, arch.variant))
