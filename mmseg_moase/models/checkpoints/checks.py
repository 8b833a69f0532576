"""Checks that a SegFormer state dict fits a config or a model, and their messages.

:func:`check_converted_fits_model` checks converted weights against a built
segmentor, ``_check_config`` an NVlabs file against a config (no model built);
:func:`layout_problem` says in words what a file that is not an NVlabs segmentor
looks like, and :func:`family_configs` names the project's configs for each head
family. Everything here reads its inputs only; none reads or writes files.
"""
import inspect
from typing import Any, Dict, List, Mapping

import torch.nn as nn
from torch import Tensor

from .layout import (MMSEG_MARKER, NVLABS_EXAMPLE_KEYS, MiTArch, _as_state_dict,
                     mit_arch, segformer_head_family, strip_module_prefix)


def family_configs(family: str, variant: str) -> str:
    """The project's configs for checkpoints of ``family``, as a sentence.

    Args:
        family (str): ``'mmseg'`` or ``'nvlabs'`` (see :class:`HeadFamily`).
        variant (str): The file's MiT variant (``'B0'`` .. ``'B5'``,
            ``'custom'``): shipped configs exist for B0 and B5.

    Returns:
        str: E.g. ``'use the mmseg-checkpoint configs
        configs/mmseg_checkpoints/*_mit-b5-mmseg_*.py'``.
    """
    v = variant.lower()
    if family == 'mmseg':
        user = ('your own mmseg SegFormer config as in '
                'configs/mmseg_checkpoints/example_user_config.py')
        if variant in ('B0', 'B5'):
            return ('use the mmseg-checkpoint configs configs/mmseg_checkpoints/'
                    f'*_mit-{v}-mmseg_*.py, or {user}')
        return f'use {user} (shipped mmseg-checkpoint configs: MiT-B0, MiT-B5)'
    if variant in ('B0', 'B5'):
        return (f'use the NVlabs configs configs/baselines/*_mit-{v}_*.py or '
                f'configs/moase/moase_mit-{v}_*.py (decode_head '
                "type='SegformerOriginalHead')")
    return ('use a config like configs/_base_/models/segformer_mit-b5_nvlabs.py '
            "for this MiT size (decode_head type='SegformerOriginalHead', "
            "channels = the file's width; shipped NVlabs configs: MiT-B0, MiT-B5)")


def layout_problem(state_dict: Mapping[str, Any]) -> str:
    """Why a state dict is not an NVlabs SegFormer segmentor, in words.

    Args:
        state_dict (Mapping[str, Any]): A state dict or a whole checkpoint.

    Returns:
        str: What the file looks like (already mmseg 1.x, an ImageNet MiT
        backbone, or unrecognised) and the NVlabs keys that were expected.
    """
    state = _as_state_dict(state_dict)
    keys = list(state)
    expected = ('expected NVlabs SegFormer keys such as ' +
                ', '.join(f"'{k}'" for k in NVLABS_EXAMPLE_KEYS))
    if MMSEG_MARKER in state:
        head = segformer_head_family(state)
        if head is not None and head.family == 'mmseg':
            # mmseg's own model zoo or tools/train.py: not an NVlabs file at all.
            variant = mit_arch(state).variant
            return (f'the checkpoint is already in the mmseg 1.x layout (it has '
                    f"'{MMSEG_MARKER}') and is an {head.label} checkpoint "
                    f"{head.layout}, "
                    "as mmseg's model zoo and tools/train.py write: it needs no "
                    'conversion and does not fit the NVlabs configs; '
                    f"{family_configs('mmseg', variant)} ({expected})")
        return (f'the checkpoint is already in the mmseg 1.x layout (it has '
                f"'{MMSEG_MARKER}'); it needs no conversion ({expected})")
    if 'patch_embed1.proj.weight' in state:
        return ('the checkpoint looks like an ImageNet-pretrained MiT backbone '
                "(keys without 'backbone.' and no decode head, e.g. "
                "'patch_embed1.proj.weight'); this converter needs a whole NVlabs "
                f'SegFormer segmentor ({expected})')
    return (f'unrecognised checkpoint layout: {expected}; the file has '
            f'{len(keys)} keys, the first are {keys[:6]}')


def _refuse_layout(state: Mapping[str, Any]) -> None:
    """Raise a ValueError saying what the file looks like and what was expected."""
    raise ValueError(layout_problem(state))


def _cfg_to_dict(cfg: Any) -> Dict[str, Any]:
    if hasattr(cfg, 'to_dict'):  # mmengine Config
        cfg = cfg.to_dict()
    return dict(cfg)


def _type_name(cfg: Mapping[str, Any]) -> str:
    t = cfg.get('type', '')
    name = t if isinstance(t, str) else getattr(t, '__name__', str(t))
    return name.rsplit('.', 1)[-1]


def _mit_defaults() -> Dict[str, Any]:
    from mmseg.models.backbones.mit import MixVisionTransformer
    params = inspect.signature(MixVisionTransformer.__init__).parameters
    return {k: params[k].default for k in ('embed_dims', 'num_layers', 'num_heads')}


def _check_config(cfg: Any, arch: MiTArch, embed: int, num_classes: int) -> None:
    """Check the file against a config's model (no model is built)."""
    cfg = _cfg_to_dict(cfg)
    model = cfg.get('model', cfg)
    backbone, head = model.get('backbone'), model.get('decode_head')
    if not isinstance(backbone, Mapping) or not isinstance(head, Mapping):
        raise ValueError('the config has no model.backbone / model.decode_head to '
                         'check the checkpoint against')
    if 'MixVisionTransformer' not in _type_name(backbone):
        raise ValueError(
            f"the config's backbone is {_type_name(backbone)!r}; an NVlabs "
            'SegFormer checkpoint needs a MixVisionTransformer (or '
            'MixVisionTransformerMoASE) backbone')
    d = _mit_defaults()
    embed_dims = backbone.get('embed_dims', d['embed_dims'])
    heads = list(backbone.get('num_heads', d['num_heads']))
    depths = tuple(backbone.get('num_layers', d['num_layers']))
    cfg_arch = MiTArch(tuple(embed_dims * h for h in heads), depths)
    if cfg_arch != arch:
        raise ValueError(
            f'backbone mismatch: the checkpoint looks like {arch.describe()}, the '
            f"config's backbone is {cfg_arch.describe()} (embed_dims={embed_dims}, "
            f'num_heads={heads}, num_layers={list(depths)})')
    if _type_name(head) != 'SegformerOriginalHead':
        raise ValueError(
            f"the config's decode head is {_type_name(head)!r}; NVlabs head weights "
            "only fit 'SegformerOriginalHead' (mmseg's SegformerHead puts "
            'norm+ReLU after each stage projection and concatenates c1..c4, the '
            f"original neither): {family_configs('nvlabs', arch.variant)}")
    if head.get('channels') != embed:
        raise ValueError(
            f"head width mismatch: the checkpoint's decode head embeds to {embed} "
            f"channels, the config's decode_head.channels is {head.get('channels')}"
            f' (NVlabs: 256 for MiT-B0/B1, 768 for B2-B5)')
    in_ch = head.get('in_channels')
    if in_ch is not None and tuple(in_ch) != arch.widths:
        raise ValueError(
            f"the config's decode_head.in_channels {list(in_ch)} do not match the "
            f'backbone stage widths {list(arch.widths)} of the checkpoint')
    cfg_classes = head.get('num_classes')
    if cfg_classes is not None and cfg_classes != num_classes:
        raise ValueError(
            f"class-count mismatch: the checkpoint's classifier has {num_classes} "
            f"classes, the config's decode_head.num_classes is {cfg_classes}")


def check_converted_fits_model(state_dict: Mapping[str, Tensor],
                               model: nn.Module) -> List[str]:
    """Check a converted state dict against a built segmentor.

    Args:
        state_dict (Mapping[str, Tensor]): Converted weights (mmseg 1.x names).
        model (nn.Module): The segmentor (a ``module.`` wrapper is unwrapped).

    Returns:
        list[str]: The model's keys the file does not have; all are adapter keys
        (``.adapter.``).

    Raises:
        ValueError: the backbone shape, the head type or width, the class count,
            or any key or shape other than adapter keys does not fit; the message
            says what the file looks like and what the model is.
    """
    model = getattr(model, 'module', model)
    own = strip_module_prefix(model.state_dict())
    state = strip_module_prefix(state_dict)
    arch = mit_arch(state)
    try:
        model_arch = mit_arch(own)
    except ValueError:
        raise ValueError('the model has no mmseg MiT backbone (no '
                         f"'{MMSEG_MARKER}')") from None
    if model_arch != arch:
        raise ValueError(f'backbone mismatch: the checkpoint looks like '
                         f'{arch.describe()}, the model is {model_arch.describe()}')
    if 'decode_head.linear_c1.proj.weight' not in own:
        head = getattr(model, 'decode_head', None)
        raise ValueError(
            f'the model\'s decode head is {type(head).__name__}; NVlabs head weights '
            "only fit 'SegformerOriginalHead': "
            f"{family_configs('nvlabs', arch.variant)}")
    cls_key = 'decode_head.conv_seg.weight'
    if cls_key in own and cls_key in state and own[cls_key].shape[0] != state[
            cls_key].shape[0]:
        raise ValueError(
            f"class-count mismatch: the checkpoint's classifier has "
            f'{state[cls_key].shape[0]} classes, the model '
            f'{own[cls_key].shape[0]} (decode_head.num_classes)')
    missing = [k for k in own if k not in state]
    bad_missing = [k for k in missing if '.adapter.' not in k]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if bad_missing or unexpected or shape_bad:
        parts = []
        if bad_missing:
            parts.append(f'model keys missing from the file: {bad_missing[:5]}')
        if unexpected:
            parts.append(f'file keys the model lacks: {unexpected[:5]}')
        if shape_bad:
            parts.append('shape mismatches: ' + ', '.join(
                f'{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                for k in shape_bad[:5]))
        raise ValueError('the converted checkpoint does not fit the model: ' +
                         '; '.join(parts))
    return missing
