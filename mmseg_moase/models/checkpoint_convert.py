"""Convert NVlabs SegFormer checkpoints (mmseg 0.x layout) to mmseg 1.x names.

The NVlabs release (``segformer.b{0-5}.*.pth``) stores a whole segmentor in the
layout of its own mmseg 0.x fork. The keys map as follows::

    NVlabs key                            -> mmseg 1.x key
    backbone.patch_embed{i}.proj.*        -> backbone.layers.{i-1}.0.projection.*
    backbone.patch_embed{i}.norm.*        -> backbone.layers.{i-1}.0.norm.*
    backbone.block{i}.{j}.norm1/norm2.*   -> backbone.layers.{i-1}.1.{j}.norm1/norm2.*
    ...attn.q.* + ...attn.kv.* (k;v)      -> ...attn.attn.in_proj_weight/bias (q;k;v)
    ...attn.proj.*                        -> ...attn.attn.out_proj.*
    ...attn.sr.* / ...attn.norm.*         -> unchanged
    ...mlp.fc1.* (Linear)                 -> ...ffn.layers.0.* (1x1 conv)
    ...mlp.dwconv.dwconv.*                -> ...ffn.layers.1.*
    ...mlp.fc2.* (Linear)                 -> ...ffn.layers.4.* (1x1 conv)
    backbone.norm{i}.*                    -> backbone.layers.{i-1}.2.*
    decode_head.linear_c{i}.proj.*        -> unchanged (SegformerOriginalHead)
    decode_head.linear_fuse.conv/bn.*     -> unchanged
    decode_head.linear_pred.*             -> decode_head.conv_seg.*
    decode_head.conv_seg.* (never used)   -> dropped

The converted head needs :class:`~mmseg_moase.models.decode_heads.
SegformerOriginalHead` with ``channels`` equal to the original embedding dim;
mmseg's own ``SegformerHead`` computes something else and cannot take these weights.

Head families: a SegFormer file is either of the NVlabs family (an original file,
or its conversion: ``decode_head.linear_c{i}.proj.*``, ``decode_head.linear_fuse.*``)
or of the mmseg family (mmseg's model zoo and ``tools/train.py``, mmseg's
``SegformerHead``: ``decode_head.convs.{i}.*``, ``decode_head.fusion_conv.*``, 256
channels for every MiT size). :func:`segformer_head_family` tells them apart by
those keys; :func:`family_configs` names the project's configs for each.

LayerNorm epsilon: the original MiT uses ``eps=1e-5`` (``nn.LayerNorm``'s default)
in the patch embeddings and in the attention's spatial-reduction norm and ``1e-6``
everywhere else; mmseg 1.x's MiT uses one ``norm_cfg`` (``eps=1e-6``) for all of
them. Weights convert one to one, but the stock mmseg MiT then differs from the
original by that epsilon alone (a relative logit gap of about 1e-5 on the random
tiny models of ``tests/test_checkpoint_convert.py``; not measured on the released
weights). :func:`apply_nvlabs_layernorm_eps` sets those norms
back to 1e-5 for an exact port. No ``norm_cfg`` can express this (mmseg's MiT
builds all its LayerNorms from the one ``norm_cfg``), so the CTTA loader
(:func:`mmseg_moase.utils.checkpoint.load_source_checkpoint`) applies it whenever
the weights come from NVlabs: an original file (converted in memory) or a file
written by this converter (``meta['converted_from']``).

All functions here are pure except :func:`apply_nvlabs_layernorm_eps`, which edits
the module it is given; none reads or writes files.
"""
import inspect
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    'MIT_VARIANTS', 'HeadFamily', 'MiTArch', 'NVLABS_LN_EPS',
    'apply_nvlabs_layernorm_eps', 'check_converted_fits_model',
    'convert_nvlabs_segformer', 'detect_nvlabs_layout', 'family_configs',
    'layout_problem', 'mit_arch', 'mit_variant', 'segformer_head_family',
    'split_checkpoint', 'strip_module_prefix'
]

#: The released MiT variants: (stage widths, depths).
MIT_VARIANTS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    'B0': ((32, 64, 160, 256), (2, 2, 2, 2)),
    'B1': ((64, 128, 320, 512), (2, 2, 2, 2)),
    'B2': ((64, 128, 320, 512), (3, 4, 6, 3)),
    'B3': ((64, 128, 320, 512), (3, 4, 18, 3)),
    'B4': ((64, 128, 320, 512), (3, 8, 27, 3)),
    'B5': ((64, 128, 320, 512), (3, 6, 40, 3)),
}

#: LayerNorm epsilon of the original patch-embedding and spatial-reduction norms.
NVLABS_LN_EPS = 1e-5

#: Keys whose presence marks each layout (after a ``module.`` prefix is removed).
NVLABS_MARKER = 'backbone.patch_embed1.proj.weight'
MMSEG_MARKER = 'backbone.layers.0.0.projection.weight'
#: Fuse-layer keys that mark each SegFormer decode-head family (either layout of
#: the backbone): mmseg's SegformerHead (and FusedSegformerHead), and the NVlabs
#: head (SegformerOriginalHead, an original file or its conversion).
MMSEG_HEAD_MARKER = 'decode_head.fusion_conv.conv.weight'
NVLABS_HEAD_MARKER = 'decode_head.linear_fuse.conv.weight'
#: NVlabs keys every converted file must have (block and stage 1 examples).
NVLABS_EXAMPLE_KEYS = (NVLABS_MARKER, 'backbone.block1.0.attn.q.weight',
                       'backbone.block1.0.attn.kv.weight', 'backbone.norm1.weight',
                       'decode_head.linear_c1.proj.weight',
                       'decode_head.linear_fuse.conv.weight',
                       'decode_head.linear_pred.weight')

_PATCH_RE = re.compile(r'^backbone\.patch_embed(\d+)\.(proj|norm)\.(weight|bias)$')
_BLOCK_RE = re.compile(r'^backbone\.block(\d+)\.(\d+)\.(.+)$')
_STAGE_NORM_RE = re.compile(r'^backbone\.norm(\d+)\.(weight|bias)$')
_HEAD_RE = re.compile(r'^decode_head\.(.+)$')
_HEAD_KEEP_RE = re.compile(
    r'^(linear_c\d+\.proj\.(weight|bias)|linear_fuse\.conv\.weight|'
    r'linear_fuse\.bn\.(weight|bias|running_mean|running_var|'
    r'num_batches_tracked))$')
_LINEAR_TO_CONV = {'mlp.fc1': 'ffn.layers.0', 'mlp.fc2': 'ffn.layers.4'}
_BLOCK_RENAME = {
    'norm1': 'norm1',
    'norm2': 'norm2',
    'attn.proj': 'attn.attn.out_proj',
    'attn.sr': 'attn.sr',
    'attn.norm': 'attn.norm',
    'mlp.dwconv.dwconv': 'ffn.layers.1',
}
#: Parameters every original block has (q/kv biases are checked separately).
_BLOCK_REQUIRED = ('norm1.weight', 'norm1.bias', 'attn.q.weight', 'attn.kv.weight',
                   'attn.proj.weight', 'attn.proj.bias', 'norm2.weight',
                   'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias',
                   'mlp.dwconv.dwconv.weight', 'mlp.dwconv.dwconv.bias',
                   'mlp.fc2.weight', 'mlp.fc2.bias')

StateDict = Dict[str, Tensor]


@dataclass(frozen=True)
class MiTArch:
    """Shape of a MiT backbone as far as its weights tell.

    Attributes:
        widths (tuple[int]): Channels of each stage (``embed_dims * num_heads[i]``).
        depths (tuple[int]): Number of blocks of each stage.
    """
    widths: Tuple[int, ...]
    depths: Tuple[int, ...]

    @property
    def variant(self) -> str:
        """``'B0'`` .. ``'B5'``, or ``'custom'`` for any other shape."""
        for name, (widths, depths) in MIT_VARIANTS.items():
            if self.widths == widths and self.depths == depths:
                return name
        return 'custom'

    def describe(self) -> str:
        """E.g. ``'MiT-B0 (stage widths [32, 64, 160, 256], depths [2, 2, 2, 2])'``."""
        shape = (f'stage widths {list(self.widths)}, '
                 f'depths {list(self.depths)}')
        if self.variant == 'custom':
            return f'a non-standard MiT ({shape})'
        return f'MiT-{self.variant} ({shape})'


@dataclass(frozen=True)
class HeadFamily:
    """Which SegFormer decode head a state dict was saved from.

    Attributes:
        family (str): ``'mmseg'``: mmseg's ``SegformerHead`` (or the project's
            ``FusedSegformerHead``, same keys), as mmseg's model zoo and
            ``tools/train.py`` save it (``decode_head.convs.{i}.*``,
            ``decode_head.fusion_conv.*``). ``'nvlabs'``: the NVlabs release head
            (``SegformerOriginalHead``: ``decode_head.linear_c{i}.proj.*``,
            ``decode_head.linear_fuse.*``), in an original file or a converted one.
        channels (int): The head's embedding width (``decode_head.channels``):
            256 in every mmseg config; NVlabs 256 for MiT-B0/B1, 768 for B2-B5.
    """
    family: str
    channels: int

    @property
    def label(self) -> str:
        """``'mmseg SegformerHead'`` or ``'NVlabs SegFormer'``."""
        return 'mmseg SegformerHead' if self.family == 'mmseg' else 'NVlabs SegFormer'

    @property
    def layout(self) -> str:
        """The head's keys and width, e.g. ``'(decode_head.convs.*,
        decode_head.fusion_conv.*; 256 channels)'``."""
        keys = ('decode_head.convs.*, decode_head.fusion_conv.*'
                if self.family == 'mmseg' else
                'decode_head.linear_c*.proj, decode_head.linear_fuse.*')
        return f'({keys}; {self.channels} channels)'


def segformer_head_family(state_dict: Mapping[str, Any]) -> Optional[HeadFamily]:
    """The SegFormer decode-head family of a state dict, from its keys.

    Args:
        state_dict (Mapping[str, Any]): A state dict (a model's or a file's, NVlabs
            or mmseg 1.x names) or a whole checkpoint; ``module.`` is ignored.

    Returns:
        HeadFamily | None: The family and width; None without either fuse layer
        (no decode head, or another head type).
    """
    state = _as_state_dict(state_dict)
    for family, marker in (('mmseg', MMSEG_HEAD_MARKER),
                           ('nvlabs', NVLABS_HEAD_MARKER)):
        if marker in state:
            return HeadFamily(family, int(state[marker].shape[0]))
    return None


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


def strip_module_prefix(state_dict: Mapping[str, Any]) -> 'OrderedDict[str, Any]':
    """Remove the ``module.`` prefix that (Distributed)DataParallel adds to keys.

    Args:
        state_dict (Mapping[str, Any]): A state dict.

    Returns:
        OrderedDict: The same entries, keys without a leading ``module.``.
    """
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in state_dict.items())


def split_checkpoint(
        ckpt: Mapping[str, Any]) -> Tuple['OrderedDict[str, Any]', Dict]:
    """Split a loaded checkpoint into (state dict, meta).

    Accepts the mmcv/mmengine layout (weights under ``state_dict``), the layout of
    some mirrors (weights under ``model``) and a bare state dict (weights at the top
    level, possibly next to a ``meta`` dict). A ``module.`` prefix is removed.

    Args:
        ckpt (Mapping[str, Any]): What ``torch.load`` returned.

    Returns:
        tuple: The state dict (keys without ``module.``) and a copy of ``meta``
        (empty if none).

    Raises:
        ValueError: ``ckpt`` is not a mapping or holds no tensors.
    """
    if not isinstance(ckpt, Mapping):
        raise ValueError('expected a checkpoint dict (with `state_dict`) or a state '
                         f'dict, got {type(ckpt).__name__}')
    meta = ckpt.get('meta')
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    for key in ('state_dict', 'model'):
        inner = ckpt.get(key)
        if isinstance(inner, Mapping) and any(
                torch.is_tensor(v) for v in inner.values()):
            state = inner
            break
    else:
        state = {k: v for k, v in ckpt.items() if torch.is_tensor(v)}
    if not state:
        raise ValueError(
            'the checkpoint holds no weights: expected tensors under `state_dict` '
            f'(or `model`, or at the top level); top-level keys are '
            f'{sorted(ckpt)[:10]}')
    return strip_module_prefix(state), meta


def _as_state_dict(obj: Mapping[str, Any]) -> 'OrderedDict[str, Any]':
    """A state dict (``module.`` removed) from a state dict or a checkpoint."""
    if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
        return split_checkpoint(obj)[0]
    return strip_module_prefix(obj)


def detect_nvlabs_layout(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is an NVlabs SegFormer segmentor (mmseg 0.x names).

    Args:
        state_dict (Mapping[str, Any]): A state dict or a whole checkpoint (weights
            under ``state_dict``); a ``module.`` prefix is ignored.

    Returns:
        bool: True if it has ``backbone.patch_embed1.proj.weight`` and the
        original attention keys (``backbone.block1.0.attn.q.weight``).
    """
    state = _as_state_dict(state_dict)
    return (NVLABS_MARKER in state
            and 'backbone.block1.0.attn.q.weight' in state)


def _arch_from_keys(state: Mapping[str, Tensor], embed_fmt: str,
                    block_re: 're.Pattern', first: int) -> Optional[MiTArch]:
    widths: List[int] = []
    i = first
    while embed_fmt.format(i) in state:
        widths.append(int(state[embed_fmt.format(i)].shape[0]))
        i += 1
    if not widths:
        return None
    blocks: Dict[int, set] = {}
    for k in state:
        m = block_re.match(k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    depths = tuple(len(blocks.get(s, ())) for s in range(first, first + len(widths)))
    return MiTArch(tuple(widths), depths)


def mit_arch(state_dict: Mapping[str, Any]) -> MiTArch:
    """Stage widths and depths of the MiT in a state dict of either layout.

    Reads NVlabs names (``patch_embed{i}``, ``block{i}.{j}``) or mmseg 1.x names
    (``layers.{i}.0.projection``, ``layers.{i}.1.{j}``), with or without the
    ``backbone.`` prefix (a bare backbone state dict) and a ``module.`` prefix.

    Args:
        state_dict (Mapping[str, Any]): A state dict or a whole checkpoint.

    Returns:
        MiTArch: Widths and depths.

    Raises:
        ValueError: no MiT patch-embedding weights in either layout.
    """
    state = _as_state_dict(state_dict)
    for prefix in ('backbone.', ''):
        p = re.escape(prefix)
        arch = _arch_from_keys(state, prefix + 'patch_embed{}.proj.weight',
                               re.compile(rf'^{p}block(\d+)\.(\d+)\.'), 1)
        if arch is None:
            arch = _arch_from_keys(state, prefix + 'layers.{}.0.projection.weight',
                                   re.compile(rf'^{p}layers\.(\d+)\.1\.(\d+)\.'), 0)
        if arch is not None:
            return arch
    raise ValueError(
        'no MiT backbone found: expected NVlabs keys such as '
        f"'{NVLABS_MARKER}' or mmseg 1.x keys such as '{MMSEG_MARKER}'; "
        f'the first keys are {list(state)[:5]}')


def mit_variant(state_dict: Mapping[str, Any]) -> str:
    """The MiT variant of a state dict of either layout.

    Args:
        state_dict (Mapping[str, Any]): A state dict or a whole checkpoint.

    Returns:
        str: ``'B0'`` .. ``'B5'`` (widths 32/64/160/256 for B0, 64/128/320/512 for
        B1-B5; depths [2,2,2,2] B0/B1, [3,4,6,3] B2, [3,4,18,3] B3, [3,8,27,3] B4,
        [3,6,40,3] B5), or ``'custom'`` for any other shape.

    Raises:
        ValueError: no MiT weights in the state dict.
    """
    return mit_arch(state_dict).variant


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


def _convert_block(stage: int, idx: int, params: Dict[str, Tensor],
                   out: StateDict) -> None:
    """Convert the parameters of one original block (keys relative to it)."""
    where = f'backbone.block{stage}.{idx}'
    missing = [k for k in _BLOCK_REQUIRED if k not in params]
    if missing:
        raise ValueError(f'{where} is incomplete: missing {missing}')
    if ('attn.q.bias' in params) != ('attn.kv.bias' in params):
        raise ValueError(f'{where}: attn.q and attn.kv must both have a bias or '
                         'both have none (qkv_bias)')
    dst = f'backbone.layers.{stage - 1}.1.{idx}.'
    q_w, kv_w = params.pop('attn.q.weight'), params.pop('attn.kv.weight')
    if kv_w.shape[0] != 2 * q_w.shape[0] or kv_w.shape[1] != q_w.shape[1]:
        raise ValueError(
            f'{where}: attn.kv.weight must stack k and v of attn.q.weight\'s shape, '
            f'got q {tuple(q_w.shape)} and kv {tuple(kv_w.shape)}')
    out[dst + 'attn.attn.in_proj_weight'] = torch.cat([q_w, kv_w], dim=0)
    if 'attn.q.bias' in params:
        out[dst + 'attn.attn.in_proj_bias'] = torch.cat(
            [params.pop('attn.q.bias'), params.pop('attn.kv.bias')], dim=0)
    unknown = []
    for key, value in params.items():
        module, _, name = key.rpartition('.')
        if module in _LINEAR_TO_CONV:
            if name == 'weight':
                value = value.reshape(*value.shape, 1, 1)
            out[dst + f'{_LINEAR_TO_CONV[module]}.{name}'] = value
        elif module in _BLOCK_RENAME and name in ('weight', 'bias'):
            out[dst + f'{_BLOCK_RENAME[module]}.{name}'] = value
        else:
            unknown.append(f'{where}.{key}')
    if unknown:
        raise ValueError(f'unrecognised block keys {unknown[:10]}; an original block '
                         'has norm1, attn.{q,kv,proj,sr,norm}, norm2, '
                         'mlp.{fc1,dwconv.dwconv,fc2}')


def _convert_state(state: Mapping[str, Tensor]) -> Tuple[StateDict, List[str]]:
    """Rename an NVlabs state dict; returns (converted, dropped keys)."""
    out: StateDict = OrderedDict()
    blocks: Dict[Tuple[int, int], Dict[str, Tensor]] = OrderedDict()
    stages_embed, stages_norm, dropped, unknown = set(), set(), [], []
    head_keys = []
    for key, value in state.items():
        m = _PATCH_RE.match(key)
        if m:
            i, part, name = int(m.group(1)), m.group(2), m.group(3)
            stages_embed.add(i)
            dst = 'projection' if part == 'proj' else 'norm'
            out[f'backbone.layers.{i - 1}.0.{dst}.{name}'] = value
            continue
        m = _BLOCK_RE.match(key)
        if m:
            blocks.setdefault((int(m.group(1)), int(m.group(2))),
                              {})[m.group(3)] = value
            continue
        m = _STAGE_NORM_RE.match(key)
        if m:
            i = int(m.group(1))
            stages_norm.add(i)
            out[f'backbone.layers.{i - 1}.2.{m.group(2)}'] = value
            continue
        m = _HEAD_RE.match(key)
        if m:
            sub = m.group(1)
            head_keys.append(key)
            if _HEAD_KEEP_RE.match(sub):
                out[key] = value
            elif sub in ('linear_pred.weight', 'linear_pred.bias'):
                out['decode_head.conv_seg.' + sub.split('.')[1]] = value
            elif sub in ('conv_seg.weight', 'conv_seg.bias'):
                dropped.append(key)  # unused by the original head
            else:
                unknown.append(key)
            continue
        unknown.append(key)
    if unknown:
        raise ValueError(
            f'{len(unknown)} keys of the checkpoint are not NVlabs SegFormer keys, '
            f'e.g. {unknown[:10]}; expected only backbone.patch_embed{{i}}.*, '
            'backbone.block{i}.{j}.*, backbone.norm{i}.* and decode_head.'
            '{linear_c{i}.proj, linear_fuse.conv, linear_fuse.bn, linear_pred, '
            'conv_seg}.*')
    n = len(stages_embed)
    if stages_embed != set(range(1, n + 1)) or stages_norm != stages_embed:
        raise ValueError(
            'the backbone stages are incomplete: patch embeddings for stages '
            f'{sorted(stages_embed)}, stage norms for {sorted(stages_norm)}; '
            f'expected both for stages 1..{max(stages_embed | stages_norm)}')
    for (stage, idx), params in blocks.items():
        if stage not in stages_embed:
            raise ValueError(f'backbone.block{stage}.{idx} has no stage: the file '
                             f'has patch embeddings for stages 1..{n}')
        _convert_block(stage, idx, dict(params), out)
    for stage in range(1, n + 1):
        idxs = sorted(j for s, j in blocks if s == stage)
        if idxs != list(range(len(idxs))) or not idxs:
            raise ValueError(f'stage {stage} blocks must be numbered 0..d-1, got '
                             f'{idxs}')
    need_head = ['decode_head.linear_fuse.conv.weight',
                 'decode_head.linear_fuse.bn.weight',
                 'decode_head.linear_pred.weight'] + [
                     f'decode_head.linear_c{i}.proj.weight'
                     for i in range(1, n + 1)]
    missing_head = [k for k in need_head if k not in head_keys]
    if missing_head:
        raise ValueError(
            f'the decode head is missing {missing_head}: expected the NVlabs '
            'SegFormer head (linear_c{i}.proj, linear_fuse.conv/bn, linear_pred)')
    return out, dropped


def _cityscapes_meta() -> Dict[str, Any]:
    from mmseg.datasets import CityscapesDataset
    info = CityscapesDataset.METAINFO
    return dict(classes=tuple(info['classes']),
                palette=[list(map(int, p)) for p in info['palette']])


def _convert_meta(meta: Mapping[str, Any], num_classes: int,
                  variant: str) -> Dict[str, Any]:
    """mmengine-style meta: ``dataset_meta=dict(classes, palette)``."""
    out = dict(meta)
    classes = out.pop('CLASSES', None)
    palette = out.pop('PALETTE', None)
    dataset_meta = dict(out.get('dataset_meta') or {})
    if classes is not None:
        dataset_meta.setdefault('classes', tuple(str(c) for c in classes))
    if palette is not None:
        dataset_meta.setdefault('palette', [list(map(int, p)) for p in palette])
    if 'classes' in dataset_meta:
        n_meta = len(dataset_meta['classes'])
        if n_meta != num_classes:
            raise ValueError(
                f'class-count mismatch inside the checkpoint: its meta lists '
                f'{n_meta} classes, its classifier (decode_head.linear_pred) has '
                f'{num_classes}')
        city = _cityscapes_meta()
        if 'palette' not in dataset_meta and dataset_meta['classes'] == city[
                'classes']:
            dataset_meta['palette'] = city['palette']
    elif num_classes == len(_cityscapes_meta()['classes']):
        dataset_meta.update(_cityscapes_meta())
        out['dataset_meta_source'] = 'mmseg CityscapesDataset.METAINFO (the file ' \
                                     'had no class names)'
    else:
        warnings.warn(
            f'the checkpoint has no class names and {num_classes} classes (not '
            "Cityscapes' 19); its meta gets no dataset_meta")
    if dataset_meta:
        out['dataset_meta'] = dataset_meta
    out['converted_from'] = 'NVlabs SegFormer (mmseg 0.x layout)'
    out['mit_variant'] = variant
    return out


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


def apply_nvlabs_layernorm_eps(module: nn.Module,
                               eps: float = NVLABS_LN_EPS) -> int:
    """Give an mmseg MiT the original's LayerNorm epsilon where it differs.

    Sets ``eps`` of every patch-embedding norm and every spatial-reduction
    attention norm (``attn.norm``) of mmseg MiT backbones inside ``module`` to
    1e-5, as in the NVlabs code (mmseg's MiT uses its ``norm_cfg`` eps, 1e-6,
    there). Block norms and stage norms stay at 1e-6, as in the original. Works on
    a segmentor, a backbone, and :class:`MixVisionTransformerMoASE`.

    Args:
        module (nn.Module): Module to edit in place.
        eps (float): The epsilon to set. Defaults to 1e-5.

    Returns:
        int: How many LayerNorms were changed.
    """
    from mmseg.models.backbones.mit import EfficientMultiheadAttention
    from mmseg.models.utils import PatchEmbed
    changed = 0
    for m in module.modules():
        norm = None
        if isinstance(m, PatchEmbed):
            norm = m.norm
        elif isinstance(m, EfficientMultiheadAttention) and m.sr_ratio > 1:
            norm = m.norm
        if isinstance(norm, nn.LayerNorm):
            norm.eps = eps
            changed += 1
    return changed
