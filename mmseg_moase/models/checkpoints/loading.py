"""Load a source checkpoint into a CTTA model, refusing one that does not fit.

The loader takes mmseg 1.x checkpoints and the original NVlabs SegFormer release
files (``segformer.b{0-5}.*.pth``, mmseg 0.x key layout) alike: an NVlabs file is
recognised by its keys and converted in memory with
:func:`~mmseg_moase.models.checkpoint_convert.convert_nvlabs_segformer`, with the
converter's checks and refusals (MiT variant, head type and width, class count).

SegFormer files come in two head families that no renaming maps onto each other:
NVlabs weights (an original file or its conversion) fit ``SegformerOriginalHead``
(the NVlabs configs), mmseg's own (model zoo, ``tools/train.py``) fit mmseg's
``SegformerHead`` / ``FusedSegformerHead`` (configs/mmseg_checkpoints/). A file of
the other family than the model is refused first, by a message naming the
configs to use, instead of a list of mismatched keys.
"""
import os.path as osp
from typing import Dict, Mapping

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

from ..checkpoint_convert import convert_nvlabs_segformer
from .checks import family_configs, layout_problem
from .layout import (MMSEG_MARKER, NVLABS_MARKER, detect_nvlabs_layout,
                     mit_arch, segformer_head_family, split_checkpoint)
from .mapping import apply_nvlabs_layernorm_eps

#: ``meta['converted_from']`` of files written by the NVlabs converter.
NVLABS_PROVENANCE = 'NVlabs SegFormer'
#: Values of ``load_source_checkpoint(layernorm_eps=...)``.
LAYERNORM_EPS_MODES = ('auto', 'nvlabs', 'model')


def is_nvlabs_derived(meta: Mapping) -> bool:
    """Whether a checkpoint's ``meta`` says it was converted from an NVlabs file."""
    return str(meta.get('converted_from', '')).startswith(NVLABS_PROVENANCE)


def _check_mit_arch(path: str, state: Mapping[str, torch.Tensor],
                    own: Mapping[str, torch.Tensor]) -> None:
    """Refuse a MiT file of another depth/width than the model, by name.

    Only for complete files (as many stages as the model); an incomplete one
    gets the list of missing keys instead.
    """
    try:
        file_arch, model_arch = mit_arch(state), mit_arch(own)
    except ValueError:
        return
    if len(file_arch.widths) == len(model_arch.widths) and \
            file_arch != model_arch:
        raise ValueError(
            f'{path}: backbone mismatch: the checkpoint looks like '
            f'{file_arch.describe()}, the model is {model_arch.describe()}. Use '
            'the config of the checkpoint\'s variant (e.g. *_mit-b0_* for B0).')


def _check_head_family(path: str, state: Mapping[str, torch.Tensor],
                       own: Mapping[str, torch.Tensor], model: nn.Module,
                       original: bool) -> None:
    """Refuse a SegFormer file of the other head family than the model.

    Args:
        path (str): The checkpoint file, for the message.
        state (Mapping[str, Tensor]): Its weights (NVlabs or mmseg 1.x names).
        own (Mapping[str, Tensor]): The model's state dict.
        model (nn.Module): The segmentor, for its head's class name.
        original (bool): ``state`` is an original NVlabs file (not converted).

    Raises:
        ValueError: one is an NVlabs head, the other mmseg's; the message names
            both and the project's configs for the file's family and MiT size.
    """
    file_head, model_head = segformer_head_family(state), segformer_head_family(own)
    if file_head is None or model_head is None or \
            file_head.family == model_head.family:
        return
    try:
        variant = mit_arch(state).variant
    except ValueError:  # no MiT: name no MiT size
        variant = 'custom'
    if file_head.family == 'mmseg':
        source = "as mmseg's model zoo and its tools/train.py write"
    else:
        source = ('an original release file' if original else
                  'converted to mmseg 1.x names')
    head = type(getattr(model, 'decode_head', None)).__name__
    raise ValueError(
        f'{path}: this is an {file_head.label} checkpoint {file_head.layout}, '
        f"{source}; the model's decode head is {head}, which takes "
        f'{model_head.label} weights {model_head.layout}. The two heads compute '
        'different functions (no renaming of keys fits one to the other): '
        f'{family_configs(file_head.family, variant)}.')


def _check_finite(path: str, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights or buffers holding NaN or inf, naming the first tensor
    and how many others do.

    A model loaded from them gives non-finite outputs: every update of the
    stream would be skipped and the table would score garbage.
    """
    bad = [k for k, v in state.items() if torch.is_tensor(v)
           and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return
    first = state[bad[0]]
    n_nan = int(torch.isnan(first).sum())
    n_inf = int(torch.isinf(first).sum())
    raise ValueError(
        f'{path}: `{bad[0]}` holds non-finite values ({n_nan} NaN, {n_inf} inf '
        f'of {first.numel()}); {len(bad) - 1} more of its {len(state)} '
        'tensors do. These weights are broken (a training run that diverged, '
        'or a damaged file) and give no usable predictions: use another '
        'checkpoint (e.g. an earlier one of the same training).')


def load_source_checkpoint(model: nn.Module, path: str,
                           layernorm_eps: str = 'auto') -> Dict:
    """Load ``path`` into ``model``; only adapter keys may be missing.

    ``path`` is an mmseg 1.x checkpoint (weights under ``state_dict``, or a bare
    state dict, optional ``meta``) or an original NVlabs SegFormer file, which is
    recognised by its keys (``backbone.patch_embed1.proj.weight``,
    ``backbone.block1.0.attn.q.weight``) and converted in memory, exactly as
    ``tools/convert_segformer_checkpoint.py`` would (a log line says so).

    LayerNorm epsilon: the original MiT uses 1e-5 in its patch embeddings and
    spatial-reduction norms and 1e-6 elsewhere, while mmseg's MiT takes one
    ``norm_cfg`` (eps 1e-6) for all of them, so no config value reproduces it.
    The epsilon belongs to the weights' training architecture: with
    ``layernorm_eps='auto'`` those norms are set to 1e-5
    (:func:`~mmseg_moase.models.checkpoint_convert.apply_nvlabs_layernorm_eps`)
    when the weights come from NVlabs (an NVlabs file, or a converted one whose
    ``meta['converted_from']`` says so) and left as built otherwise (e.g. for
    models trained with mmseg).

    Args:
        model (nn.Module): The segmentor (unwrapped).
        path (str): The checkpoint file.
        layernorm_eps (str): ``'auto'`` (see above), ``'nvlabs'`` (always set
            the original epsilons) or ``'model'`` (never change the model).
            Defaults to ``'auto'``.

    Returns:
        dict: The checkpoint's ``meta`` (empty if none); for an NVlabs file the
        converted meta (``dataset_meta``, ``converted_from``, ``mit_variant``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a file of the other SegFormer head family (NVlabs weights
            for mmseg's SegformerHead or the reverse; the message names the
            configs to use), an unrecognised key layout (the message names the
            expected keys), a MiT of another depth/width (the message says which
            variant the file looks like, e.g. "looks like MiT-B0"), a class-count
            mismatch (both numbers), any other key or shape that does not fit,
            or weights or buffers holding NaN or inf (the first tensor named,
            with how many others do).
    """
    if layernorm_eps not in LAYERNORM_EPS_MODES:
        raise ValueError(f'layernorm_eps must be one of {LAYERNORM_EPS_MODES}, '
                         f'got {layernorm_eps!r}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        ckpt = _load_checkpoint(path, map_location='cpu')
    except Exception as e:  # noqa: BLE001  (the unpickler's errors vary)
        raise ValueError(
            f'{path} is not a PyTorch checkpoint (torch.load: '
            f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""});'
            ' pass the .pth file of a trained SegFormer (mmseg 1.x or '
            'NVlabs).') from None
    try:
        state, meta = split_checkpoint(ckpt)
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None
    own = model.state_dict()

    nvlabs = detect_nvlabs_layout(state)
    _check_head_family(path, state, own, model, nvlabs)
    if nvlabs:
        try:
            converted = convert_nvlabs_segformer(
                dict(state_dict=state, meta=meta), target=model)
        except ValueError as e:
            raise ValueError(f'{path} (NVlabs SegFormer layout): {e}') from None
        state, meta = converted['state_dict'], converted['meta']
        arch = mit_arch(state)
        print_log(
            f'{path}: original NVlabs SegFormer checkpoint ({arch.describe()}, '
            f'{state["decode_head.conv_seg.weight"].shape[0]} classes), '
            'converted to mmseg 1.x names in memory (as '
            'tools/convert_segformer_checkpoint.py does)', logger='current')
    elif MMSEG_MARKER in own and MMSEG_MARKER not in state:
        # A MiT model and a file in neither layout: say what was expected.
        raise ValueError(
            f'{path}: {layout_problem(state)}; the CTTA loader takes an NVlabs '
            f"SegFormer file (keys such as '{NVLABS_MARKER}') or an mmseg 1.x "
            f"checkpoint (keys such as '{MMSEG_MARKER}')")

    missing = [k for k in own if k not in state and '.adapter.' not in k]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in state
                 if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    cls_keys = [k for k in shape_bad if ('conv_seg' in k or 'linear_pred' in k)
                and state[k].shape[0] != own[k].shape[0]]
    if cls_keys:
        k = cls_keys[0]
        raise ValueError(
            f'{path}: class-count mismatch: the checkpoint classifier `{k}` has '
            f'{state[k].shape[0]} classes, the model {own[k].shape[0]} '
            '(model.decode_head.num_classes must equal the dataset classes).')
    if missing or unexpected or shape_bad:
        _check_mit_arch(path, state, own)
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
    _check_finite(path, state)
    model.load_state_dict(state, strict=False)

    from_nvlabs = nvlabs or is_nvlabs_derived(meta)
    if layernorm_eps == 'nvlabs' or (layernorm_eps == 'auto' and from_nvlabs):
        n = apply_nvlabs_layernorm_eps(model)
        print_log(
            f'{path}: NVlabs weights: {n} MiT LayerNorms (patch embeddings, '
            'spatial-reduction norms) set to the original eps 1e-5',
            logger='current')
    return meta
