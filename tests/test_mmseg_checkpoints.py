"""mmseg-format SegFormer checkpoints: their configs, the family refusals, a
user's own mmseg config.

The checkpoints are saved from mmseg's own model (``EncoderDecoder`` built from
mmseg's shipped SegFormer config, random weights), as mmseg's model zoo and
``tools/train.py`` write them; the runs use tiny MiTs on a fabricated ACDC tree
(64x128 files, 32x64 after the stream's Resize 0.5).
"""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from mmseg.registry import MODELS
from mmseg_moase.models.checkpoint_convert import (convert_nvlabs_segformer,
                                                   segformer_head_family)
from mmseg_moase.models.checkpoints.loading import load_source_checkpoint

from conftest import ROOT
from ctta_helpers import TINY_MODEL
from test_acdc_stream import CONDITIONS, write_acdc_tree, write_stream_config
from test_checkpoint_convert import OrigSegFormer, randomize
from tools import test_ctta

CFG_DIR = osp.join(ROOT, 'configs', 'mmseg_checkpoints')
METHODS = ('source', 'norm_stat', 'tent', 'cotta', 'moase', 'moase-pp')
STREAMS = [('b5', 3, 'cityscapes-to-acdc-960x540'),
           ('b5', 10, 'cityscapes-to-acdc-960x540'),
           ('b0', 3, 'cityscapes-to-acdc-960x540'),
           ('b0', 10, 'cityscapes-to-acdc-960x540'),
           ('b5', 3, 'cityscapes-to-cityscapes-c-1024x512')]
MMSEG_CONFIGS = {
    (m, bb, r, s): osp.join(CFG_DIR, f'{m}_mit-{bb}-mmseg_{r}rounds_{s}.py')
    for m in METHODS for bb, r, s in STREAMS}
EXAMPLE = osp.join(CFG_DIR, 'example_user_config.py')


def mmseg_config(bb: str) -> str:
    """mmseg's shipped Cityscapes SegFormer config of a MiT size."""
    return f'mmseg::segformer/segformer_mit-{bb}_8xb1-160k_cityscapes-1024x1024.py'


def fromfile(path: str) -> Config:
    """``Config.fromfile`` that also reads ``mmseg::`` paths."""
    if path.startswith('mmseg::'):
        import mmseg
        path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs',
                        path[len('mmseg::'):])
    return Config.fromfile(path)


def nvlabs_config(method: str, bb: str, rounds: int, stream: str) -> str:
    """The NVlabs twin of an mmseg-checkpoint config."""
    folder = 'moase' if method.startswith('moase') else 'baselines'
    return osp.join(ROOT, 'configs', folder,
                    f'{method}_mit-{bb}_{rounds}rounds_{stream}.py')


def write_tiny(path: str, base: str, data_root: str = 'data/acdc') -> str:
    """``base`` with the tiny mmseg-head model, one round and ``data_root``."""
    return write_stream_config(path, data_root, base, model=TINY_MODEL)


def build(config: str) -> nn.Module:
    return MODELS.build(fromfile(config).model)


def save_mmseg_checkpoint(config: str, path: str, seed: int = 0) -> nn.Module:
    """mmseg's own model of ``config`` with random weights, saved as mmseg does."""
    model = randomize(build(config), seed)
    meta = dict(mmseg_version='1.2.2', dataset_meta=dict(classes=tuple(
        f'c{i}' for i in range(model.decode_head.num_classes))))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return model


def _results(work: str) -> dict:
    with open(osp.join(work, 'ctta_results.json')) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------
def test_configs_inherit_mmseg_and_the_shared_protocol():
    assert len(MMSEG_CONFIGS) == 30
    assert sorted(os.listdir(CFG_DIR)) == sorted(
        [osp.basename(p) for p in MMSEG_CONFIGS.values()] +
        ['example_user_config.py'])
    mmseg = {bb: fromfile(mmseg_config(bb)).model.to_dict()
             for bb in ('b0', 'b5')}
    for ref in mmseg.values():
        ref.pop('_scope_', None)
    for (method, bb, rounds, stream), path in MMSEG_CONFIGS.items():
        cfg = Config.fromfile(path)
        model = cfg.model.to_dict()
        model.pop('_scope_', None)
        head = model['decode_head']
        assert head['type'] == 'FusedSegformerHead' and head['channels'] == 256
        backbone = model['backbone']
        assert backbone['init_cfg'] is None
        if method.startswith('moase'):
            assert backbone['type'] == 'MixVisionTransformerMoASE'
            assert backbone.pop('moase_cfg')['type'] == 'MoASEAdapter'
            for k in ('moase_stages', 'moase_bottlenecks'):  # the class's
                backbone.pop(k, None)  # defaults unless the config sets them
            backbone['type'] = 'MixVisionTransformer'
        # mmseg's own model config but for the head's class and the download.
        ref = mmseg[bb]
        assert model == dict(
            ref, backbone=dict(ref['backbone'], init_cfg=None),
            decode_head=dict(ref['decode_head'], type='FusedSegformerHead'))
        # The NVlabs twin: the same stream and method settings, the same
        # slide inference; only the head differs.
        twin = Config.fromfile(nvlabs_config(method, bb, rounds, stream))
        for key in ('ctta_stream', 'ctta_method', 'ctta_cfg', 'custom_hooks'):
            assert cfg.get(key) == twin.get(key), (path, key)
        assert cfg.model.test_cfg == twin.model.test_cfg == dict(
            mode='slide', crop_size=(1024, 1024), stride=(768, 768))
        assert twin.model.decode_head.type == 'SegformerOriginalHead'
        assert cfg.ctta_stream.rounds == rounds
        assert cfg.ctta_stream.plain_view_index == 4
        assert cfg.ctta_method.get('view_index') is None
    # The user pattern: mmseg's B2 config untouched but for the adapters.
    cfg = Config.fromfile(EXAMPLE)
    ref = fromfile(mmseg_config('b2')).model
    assert cfg.model.decode_head == ref.decode_head
    assert cfg.model.decode_head.type == 'SegformerHead'
    assert cfg.model.backbone.type == 'MixVisionTransformerMoASE'
    assert cfg.model.backbone.num_layers == ref.backbone.num_layers == [3, 4, 6, 3]
    assert cfg.ctta_method.type == 'MoASE'
    assert cfg.ctta_stream.plain_view_index == 4


def test_models_build_with_the_mmseg_head(tmp_path):
    for method in ('source', 'moase'):
        path = MMSEG_CONFIGS[(method, 'b5', 3, 'cityscapes-to-acdc-960x540')]
        model = build(write_tiny(str(tmp_path / f'{method}.py'), path))
        assert type(model.decode_head).__name__ == 'FusedSegformerHead'
        assert segformer_head_family(model.state_dict()).family == 'mmseg'
    model = build(write_tiny(str(tmp_path / 'user.py'), EXAMPLE))
    assert type(model.decode_head).__name__ == 'SegformerHead'
    assert type(model.backbone).__name__ == 'MixVisionTransformerMoASE'


# --------------------------------------------------------------------------
# The two families: equality with mmseg's model, refusals
# --------------------------------------------------------------------------
def test_moase_on_mmseg_checkpoint_equals_stock_mmseg(tmp_path):
    stock_cfg = write_tiny(str(tmp_path / 'stock.py'), mmseg_config('b5'))
    path = str(tmp_path / 'mmseg_tiny.pth')
    stock = save_mmseg_checkpoint(stock_cfg, path)
    assert type(stock.decode_head).__name__ == 'SegformerHead'
    moase_cfg = write_tiny(str(tmp_path / 'moase.py'), MMSEG_CONFIGS[
        ('moase', 'b5', 3, 'cityscapes-to-acdc-960x540')])
    moase = build(moase_cfg)
    meta = load_source_checkpoint(moase, path)
    assert meta['mmseg_version'] == '1.2.2'
    # mmseg-trained weights keep mmseg's LayerNorm eps (no NVlabs 1e-5).
    assert {m.eps for n, m in moase.named_modules()
            if isinstance(m, nn.LayerNorm) and '.adapter.' not in n} == {1e-6}
    # The user pattern (mmseg's SegformerHead itself) takes the same file: the
    # tiny sizes make mmseg's B2 and B5 configs the same MiT.
    user = build(write_tiny(str(tmp_path / 'user.py'), EXAMPLE))
    load_source_checkpoint(user, path)
    img = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(1))
    metas = [dict(ori_shape=(32, 64), img_shape=(32, 64), pad_shape=(32, 64),
                  padding_size=[0, 0, 0, 0])] * 2
    for name, model in (('MoASE config', moase), ('user pattern', user)):
        model.eval()
        with torch.no_grad():
            ref = stock.float().inference(img, metas)
            diff = (model.float().inference(img, metas) - ref).abs().max().item()
            # In float64 the fused head's summation order leaves ~1e-15.
            diff64 = (model.double().inference(img.double(), metas) -
                      stock.double().inference(img.double(), metas)
                      ).abs().max().item()
        print(f'{name} (fresh adapters) vs stock mmseg: {diff:.1e} '
              f'(float64 {diff64:.1e}; logits up to {ref.abs().max():.1f})')
        assert diff <= 1e-6 and diff64 <= 1e-12


def test_family_refusals(tmp_path):
    """Real-size MiT-B0 files of each family against the other's configs."""
    stream = 'cityscapes-to-acdc-960x540'
    nvlabs_model = build(nvlabs_config('source', 'b0', 3, stream))
    mmseg_model = build(MMSEG_CONFIGS[('source', 'b0', 3, stream)])
    mmseg_moase = build(MMSEG_CONFIGS[('moase', 'b0', 3, stream)])

    mmseg_file = str(tmp_path / 'segformer_mit-b0_cityscapes_mmseg.pth')
    save_mmseg_checkpoint(mmseg_config('b0'), mmseg_file)
    load_source_checkpoint(mmseg_model, mmseg_file)  # its own family: fits
    with pytest.raises(ValueError) as err:
        load_source_checkpoint(nvlabs_model, mmseg_file)
    msg = str(err.value)
    print(msg)
    assert msg.startswith(
        f'{mmseg_file}: this is an mmseg SegformerHead checkpoint '
        '(decode_head.convs.*, decode_head.fusion_conv.*; 256 channels)')
    assert "decode head is SegformerOriginalHead, which takes NVlabs" in msg
    assert 'configs/mmseg_checkpoints/*_mit-b0-mmseg_*.py' in msg
    assert 'example_user_config.py' in msg
    # The converter says so too.
    with pytest.raises(ValueError, match=r'already in the mmseg 1\.x layout.*'
                       r'mmseg SegformerHead checkpoint.*_mit-b0-mmseg_'):
        convert_nvlabs_segformer(torch.load(mmseg_file, weights_only=True))

    orig = randomize(OrigSegFormer(widths=[32, 64, 160, 256], depths=[2, 2, 2, 2],
                                   embed=256, num_classes=19), seed=2)
    raw = str(tmp_path / 'segformer.b0.1024x1024.city.160k.pth')
    torch.save(dict(state_dict=orig.state_dict()), raw)
    converted = str(tmp_path / 'segformer_b0_city_mmseg1x.pth')
    torch.save(convert_nvlabs_segformer(torch.load(raw, weights_only=True)),
               converted)
    load_source_checkpoint(nvlabs_model, converted)  # its own family: fits
    for file, how in ((raw, 'an original release file'),
                      (converted, 'converted to mmseg 1.x names')):
        for model in (mmseg_model, mmseg_moase):
            with pytest.raises(ValueError) as err:
                load_source_checkpoint(model, file)
            msg = str(err.value)
            print(msg)
            assert msg.startswith(
                f'{file}: this is an NVlabs SegFormer checkpoint '
                '(decode_head.linear_c*.proj, decode_head.linear_fuse.*; 256 '
                f'channels), {how}')
            assert 'decode head is FusedSegformerHead, which takes mmseg ' \
                   'SegformerHead weights' in msg
            assert 'configs/baselines/*_mit-b0_*.py' in msg
            assert 'configs/moase/moase_mit-b0_*.py' in msg
    # A user's config (mmseg's SegformerHead itself) refuses it the same way.
    with pytest.raises(ValueError, match='decode head is SegformerHead, which '
                       r'takes mmseg SegformerHead weights.*_mit-b0_\*\.py'):
        load_source_checkpoint(build(mmseg_config('b0')), raw)
    # And so does the converter, given an mmseg config as its target.
    with pytest.raises(ValueError, match="only fit 'SegformerOriginalHead'.*"
                       r'configs/baselines/\*_mit-b0_\*\.py'):
        convert_nvlabs_segformer(
            torch.load(raw, weights_only=True),
            target=Config.fromfile(MMSEG_CONFIGS[('source', 'b0', 3, stream)]))


# --------------------------------------------------------------------------
# Runs through tools/test_ctta.py
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def acdc(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('acdc'))
    write_acdc_tree(root, num=1, hw=(64, 128))
    return root


def test_ctta_runs_on_mmseg_checkpoint(tmp_path, acdc):
    ckpt = str(tmp_path / 'mmseg_tiny.pth')
    save_mmseg_checkpoint(write_tiny(str(tmp_path / 'stock.py'),
                                     mmseg_config('b5')), ckpt)
    miou: Dict[str, list] = {}
    for method in ('source', 'moase'):
        cfg = write_tiny(str(tmp_path / f'{method}.py'), MMSEG_CONFIGS[
            (method, 'b5', 3, 'cityscapes-to-acdc-960x540')], acdc)
        work = str(tmp_path / method)
        test_ctta.main([cfg, ckpt, '--work-dir', work, '--seed', '0'])
        res = _results(work)
        assert [p['domain'] for p in res['passes']] == list(CONDITIONS)
        assert all(p['images'] == 1 and np.isfinite(p['mIoU'])
                   for p in res['passes'])
        miou[method] = [p['mIoU'] for p in res['passes']]
    print(miou)
    # The NVlabs twin refuses the same file before reading any data.
    cfg = write_tiny(str(tmp_path / 'nvlabs.py'), nvlabs_config(
        'source', 'b5', 3, 'cityscapes-to-acdc-960x540'), acdc)
    # (A tiny MiT is no shipped size: the message points to the user pattern.)
    with pytest.raises(ValueError, match=r'mmseg SegformerHead checkpoint.*'
                       r'example_user_config\.py \(shipped mmseg-checkpoint '
                       r'configs: MiT-B0, MiT-B5\)'):
        test_ctta.main([cfg, ckpt, '--work-dir', str(tmp_path / 'nv')])


def test_user_config_pattern_end_to_end(tmp_path, acdc):
    """The example file's text, on a user's own (tiny) mmseg SegFormer config,
    run as the README says: ``python tools/test_ctta.py CONFIG CKPT
    --cfg-options ...``."""
    user = str(tmp_path / 'my_segformer_b2.py')
    with open(user, 'w') as f:  # a user's mmseg config: B2, their own sizes
        f.write(f"_base_ = ['{mmseg_config('b2')}']\n{TINY_MODEL}\n")
    ckpt = str(tmp_path / 'iter_160000.pth')
    save_mmseg_checkpoint(user, ckpt)

    with open(EXAMPLE) as f:
        text = f.read()
    assert text.count(mmseg_config('b2')) == 1
    text = text.replace(mmseg_config('b2'), user).replace(
        "'../_base_/", f"'{ROOT}/configs/_base_/")
    config = str(tmp_path / 'ctta_my_segformer.py')
    with open(config, 'w') as f:
        f.write(text)
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'test_ctta.py'), config, ckpt,
         '--work-dir', work, '--cfg-options',
         f'ctta_stream.dataloader.dataset.data_root={acdc}',
         'ctta_stream.rounds=1', 'ctta_stream.dataloader.num_workers=0',
         'ctta_cfg.progress_interval=0', 'log_level=WARNING'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = _results(work)
    assert res['summary']['method'] == 'MoASE'
    assert [p['domain'] for p in res['passes']] == list(CONDITIONS)
    assert all(np.isfinite(p['mIoU']) for p in res['passes'])
