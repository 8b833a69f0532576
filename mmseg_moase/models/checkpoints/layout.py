"""Layout detection of SegFormer checkpoints: MiT variant, key layout, head family.

Reads a state dict's keys and shapes only: which MiT it holds (:func:`mit_arch`,
:func:`mit_variant`), whether it is in the NVlabs (mmseg 0.x) layout
(:func:`detect_nvlabs_layout`) and which decode-head family it was saved from
(:func:`segformer_head_family`), plus unwrapping checkpoints
(:func:`split_checkpoint`, :func:`strip_module_prefix`).

Head families: a SegFormer file is either of the NVlabs family (an original file,
or its conversion: ``decode_head.linear_c{i}.proj.*``, ``decode_head.linear_fuse.*``)
or of the mmseg family (mmseg's model zoo and ``tools/train.py``, mmseg's
``SegformerHead``: ``decode_head.convs.{i}.*``, ``decode_head.fusion_conv.*``, 256
channels for every MiT size). :func:`segformer_head_family` tells them apart by
those keys; :func:`~mmseg_moase.models.checkpoints.checks.family_configs` names
the project's configs for each.

All functions here are pure.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

#: The released MiT variants: (stage widths, depths).
MIT_VARIANTS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    'B0': ((32, 64, 160, 256), (2, 2, 2, 2)),
    'B1': ((64, 128, 320, 512), (2, 2, 2, 2)),
    'B2': ((64, 128, 320, 512), (3, 4, 6, 3)),
    'B3': ((64, 128, 320, 512), (3, 4, 18, 3)),
    'B4': ((64, 128, 320, 512), (3, 8, 27, 3)),
    'B5': ((64, 128, 320, 512), (3, 6, 40, 3)),
}

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
