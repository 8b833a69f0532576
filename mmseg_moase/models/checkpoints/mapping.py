"""Key mapping from NVlabs SegFormer (mmseg 0.x layout) to mmseg 1.x names.

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
The meta maps too: ``CLASSES``/``PALETTE`` become mmengine's ``dataset_meta``.

LayerNorm epsilon: the original MiT uses ``eps=1e-5`` (``nn.LayerNorm``'s default)
in the patch embeddings and in the attention's spatial-reduction norm and ``1e-6``
everywhere else; mmseg 1.x's MiT uses one ``norm_cfg`` (``eps=1e-6``) for all of
them. Weights convert one to one, but the stock mmseg MiT then differs from the
original by that epsilon alone (a relative logit gap of about 1e-5 on the random
tiny models of ``tests/test_checkpoint_convert.py``; not measured on the released
weights). :func:`apply_nvlabs_layernorm_eps` sets those norms
back to 1e-5 for an exact port. No ``norm_cfg`` can express this (mmseg's MiT
builds all its LayerNorms from the one ``norm_cfg``), so the CTTA loader
(:func:`~.loading.load_source_checkpoint`) applies it whenever
the weights come from NVlabs: an original file (converted in memory) or a file
written by this converter (``meta['converted_from']``).

All functions here are pure except :func:`apply_nvlabs_layernorm_eps`, which edits
the module it is given; none reads or writes files.
"""
import re
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import torch
import torch.nn as nn
from torch import Tensor

#: LayerNorm epsilon of the original patch-embedding and spatial-reduction norms.
NVLABS_LN_EPS = 1e-5

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
