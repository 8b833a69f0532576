"""The Cityscapes -> ACDC stream: configs, data checks, NVlabs checkpoints.

A fabricated ACDC tree in the real layout (9:16 images, reference images that
must be skipped) goes through the real stream base (Resize 0.5, labels loaded
after it, the 14 CoTTA views) and the real method configs, with the model
shrunk to the tiny MiT of ``test_checkpoint_convert.py`` so that tiny NVlabs
checkpoints fit it.
"""
import copy
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import Runner
from PIL import Image

from mmseg.registry import DATASETS, MODELS
from mmseg_moase.apis import prepare_ctta_config, run_ctta
from mmseg_moase.methods.base import BaseCTTAMethod, split_views
from mmseg_moase.models.checkpoint_convert import convert_nvlabs_segformer
from mmseg_moase.models.checkpoints import loading as ckpt_mod
from mmseg_moase.models.checkpoints.loading import load_source_checkpoint

from conftest import ROOT
from ctta_helpers import make_domains, write_config
from test_checkpoint_convert import (DEPTHS, EMBED, HEADS, SR, WIDTHS,
                                     OrigSegFormer, original_ckpt, randomize)
from tools import check_data, test_ctta

CONDITIONS = ('fog', 'night', 'rain', 'snow')
IMG_HW = (144, 256)  # 9:16 like ACDC's 1080x1920; the plain view is 72x128
PLAIN_HW = (72, 128)
RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
STREAM = osp.join(ROOT, 'configs', '_base_', 'streams',
                  'cityscapes-to-acdc_3rounds.py')

METHODS = ('source', 'norm_stat', 'tent', 'cotta', 'moase')
CONFIGS = [
    osp.join(ROOT, 'configs', 'moase' if m == 'moase' else 'baselines',
             f'{m}_mit-{bb}_{r}rounds_cityscapes-to-acdc-960x540.py')
    for m in METHODS for bb in ('b5', 'b0') for r in (3, 10)
]



def method_config(method: str, backbone: str = 'b0', rounds: int = 3) -> str:
    """Path of one of the 20 method configs."""
    return CONFIGS[METHODS.index(method) * 4 + 2 * (backbone == 'b0') +
                   (rounds == 10)]


# The tiny MiT (and head width) of the fabricated NVlabs checkpoints.
TINY_NVLABS_MODEL = f'''
model = dict(
    backbone=dict(embed_dims={WIDTHS[0]}, num_heads={HEADS},
                  num_layers={DEPTHS}, sr_ratios={SR}, drop_path_rate=0.0),
    decode_head=dict(in_channels={WIDTHS}, channels={EMBED}))
'''


# --------------------------------------------------------------------------
# Fabrication
# --------------------------------------------------------------------------
def _label(rng: np.random.Generator, hw: Sequence[int]) -> np.ndarray:
    h, w = hw
    blocks = rng.integers(0, 19, size=(h // 8 + 1, w // 8 + 1)).astype(np.uint8)
    label = np.kron(blocks, np.ones((8, 8), np.uint8))[:h, :w]
    label[:4, :4] = 255
    return label


def write_acdc_tree(root: str, conditions: Sequence[str] = CONDITIONS,
                    num: int = 2, hw: Sequence[int] = IMG_HW,
                    seed: int = 0) -> Dict[str, List[str]]:
    """ACDC's layout: rgb_anon/<cond>/train/<seq>/*_rgb_anon.png, gt/... .

    Files are written in reverse order, two sequences per condition, plus the
    reference images of the real release (``train_ref`` folders,
    ``*_ref_anon.png``) and an image in a ``ref`` folder inside ``train`` that
    the dataset must skip, and ACDC's other label files. Returns the image paths
    per condition in sorted order.
    """
    rng = np.random.default_rng(seed)
    images = {}
    for c, cond in enumerate(conditions):
        paths = []
        for i in reversed(range(num)):
            seq = ('GP010475', 'GOPR0351')[i % 2]
            stem = f'{seq}_frame_{c * 100 + i:06d}'
            img_dir = osp.join(root, 'rgb_anon', cond, 'train', seq)
            gt_dir = osp.join(root, 'gt', cond, 'train', seq)
            ref_dir = osp.join(root, 'rgb_anon', cond, 'train_ref', seq)
            for d in (img_dir, gt_dir, ref_dir):
                os.makedirs(d, exist_ok=True)
            label = _label(rng, hw)
            img = (rng.random((*hw, 3)) * 80 +
                   (label[..., None] % 19) * 9).astype(np.uint8)
            path = osp.join(img_dir, f'{stem}_rgb_anon.png')
            Image.fromarray(img).save(path)
            paths.append(path)
            Image.fromarray(label).save(
                osp.join(gt_dir, f'{stem}_gt_labelTrainIds.png'))
            Image.fromarray(label).save(osp.join(gt_dir, f'{stem}_gt_labelIds.png'))
            Image.fromarray(img).save(osp.join(gt_dir, f'{stem}_gt_labelColor.png'))
            Image.fromarray(img).save(osp.join(ref_dir, f'{stem}_ref_anon.png'))
            Image.fromarray(img).save(osp.join(img_dir, f'{stem}_ref_anon.png'))
        ref_in = osp.join(root, 'rgb_anon', cond, 'train', 'ref', 'GOPR0351')
        os.makedirs(ref_in, exist_ok=True)
        Image.fromarray(np.zeros((*hw, 3), np.uint8)).save(
            osp.join(ref_in, 'GOPR0351_frame_999999_rgb_anon.png'))
        images[cond] = sorted(paths)
    return images


def write_stream_config(path: str, data_root: str, base: str,
                        extra: str = '', model: str = TINY_NVLABS_MODEL) -> str:
    """A config inheriting ``base`` (a real method config or the stream base)
    with the tiny ``model`` (NVlabs head by default), one round and the
    fabricated data root."""
    text = f'''
_base_ = ['{base}']
{model}
ctta_stream = dict(
    rounds=1,
    dataloader=dict(num_workers=0, dataset=dict(data_root='{data_root}')))
ctta_cfg = dict(save_interval=0, progress_interval=0.0)
log_level = 'WARNING'
{extra}
'''
    with open(path, 'w') as f:
        f.write(text)
    return path


def nvlabs_tiny_ckpt(tmp_path) -> Dict[str, str]:
    """A tiny NVlabs-layout file (19 classes) and its converted twin."""
    _, ckpt = original_ckpt(num_classes=19, seed=3)
    raw = str(tmp_path / 'segformer.tiny.city.pth')
    torch.save(ckpt, raw)
    converted = str(tmp_path / 'segformer_tiny_mmseg1x.pth')
    torch.save(convert_nvlabs_segformer(ckpt), converted)
    return dict(raw=raw, converted=converted)


def _ln_eps(model: nn.Module) -> Dict[str, float]:
    return {n: m.eps for n, m in model.named_modules()
            if isinstance(m, nn.LayerNorm)}


_EPS_PATTERNS = (
    (re.compile(r'backbone\.layers\.\d+\.0\.norm$'), 1e-5),  # patch embedding
    (re.compile(r'\.attn\.norm$'), 1e-5),  # spatial reduction
    (re.compile(r'backbone\.layers\.\d+\.1\.\d+\.norm[12]$'), 1e-6),  # block
    (re.compile(r'backbone\.layers\.\d+\.2$'), 1e-6),  # stage norm
)


def _nvlabs_eps_ok(model: nn.Module) -> bool:
    """1e-5 in patch embeddings and SR norms, 1e-6 in block and stage norms."""
    eps = {n: e for n, e in _ln_eps(model).items() if '.adapter.' not in n}
    assert eps
    for name, e in eps.items():
        want = next(w for pat, w in _EPS_PATTERNS if pat.search(name))
        if e != want:
            print(f'{name}: eps {e}, expected {want}')
            return False
    return True


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------
def test_all_method_configs(tmp_path):
    assert len(CONFIGS) == 20
    for path in CONFIGS:
        name = osp.basename(path)
        method = name.split('_mit-')[0]
        bb = 'b5' if '_mit-b5_' in name else 'b0'
        rounds = 3 if '_3rounds_' in name else 10
        cfg = prepare_ctta_config(path, 'source.pth', work_dir=str(tmp_path))
        stream = cfg.ctta_stream
        assert stream.rounds == rounds == cfg.test_cfg.rounds
        assert [d['name'] for d in stream.domains] == list(CONDITIONS)
        for d in stream.domains:
            assert d['dataset']['data_prefix'] == dict(
                img_path=f"rgb_anon/{d['name']}/train",
                seg_map_path=f"gt/{d['name']}/train")
        ds = cfg.test_dataloader.dataset
        assert ds.type == 'ACDCDataset' and ds.data_root == 'data/acdc'
        assert cfg.test_dataloader.batch_size == 1
        assert [t['type'] for t in ds.pipeline] == [
            'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs']
        assert ds.pipeline[1]['scale_factor'] == 0.5
        assert ds.pipeline[1]['keep_ratio']
        tta = cfg.test_cfg.tta_pipeline[1]['transforms']
        assert [t['scale_factor'] for t in tta[0]] == [0.5 * r for r in RATIOS]
        assert [t['prob'] for t in tta[1]] == [0., 1.]
        assert tta[2] == [dict(type='LoadAnnotations')]
        # The stream declares the plain view once; the loop gives it to the
        # method (no method config repeats it).
        assert cfg.ctta_method.get('view_index') is None, name
        assert cfg.test_cfg.plain_view_index == 4, name
        head = cfg.model.decode_head
        assert head.type == 'SegformerOriginalHead'
        assert head.channels == (768 if bb == 'b5' else 256)
        assert head.num_classes == 19
        assert cfg.model.backbone.embed_dims == (64 if bb == 'b5' else 32)
        assert cfg.model.backbone.num_layers == (
            [3, 6, 40, 3] if bb == 'b5' else [2, 2, 2, 2])
        assert cfg.model.backbone.init_cfg is None
        assert cfg.model.backbone.type == (
            'MixVisionTransformerMoASE' if method == 'moase' else
            'MixVisionTransformer')
        assert dict(cfg.model.test_cfg) == dict(
            mode='slide', crop_size=(1024, 1024), stride=(768, 768))
        assert 'mmseg_moase' in cfg.custom_imports['imports']


def test_b0_nvlabs_config_is_exact_port(tmp_path, monkeypatch):
    """The real B0 config takes a B0-shaped NVlabs file and computes its logits.

    As built, every MiT LayerNorm has mmseg's eps (1e-6, from ``norm_cfg``);
    loading NVlabs weights restores the original 1e-5 in the patch embeddings
    and spatial-reduction norms (block and stage norms stay 1e-6).
    """
    cfg = Config.fromfile(method_config('source'))
    assert 'mit-b0_3rounds' in cfg.filename
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert type(model.decode_head).__name__ == 'SegformerOriginalHead'
    assert set(_ln_eps(model).values()) == {1e-6}
    n_norms = len(_ln_eps(model))
    # Patch embeddings, stage norms, 2 per block, SR norms (stages 1-3).
    assert n_norms == 4 + 4 + 2 * 8 + 2 * 3

    orig = randomize(OrigSegFormer(widths=[32, 64, 160, 256], depths=[2, 2, 2, 2],
                                   embed=256, num_classes=19), seed=5)
    path = str(tmp_path / 'segformer.b0.1024x1024.city.160k.pth')
    torch.save(dict(state_dict=orig.state_dict(), meta=dict()), path)
    logs = []
    monkeypatch.setattr(ckpt_mod, 'print_log',
                        lambda msg, **kw: logs.append(msg))
    meta = load_source_checkpoint(model, path)
    assert meta['mit_variant'] == 'B0'
    assert any('converted to mmseg 1.x names in memory' in m and 'MiT-B0' in m
               for m in logs), logs
    assert any('eps 1e-5' in m for m in logs), logs
    assert _nvlabs_eps_ok(model)
    model.eval()
    img = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    metas = [dict(ori_shape=(64, 96), img_shape=(64, 96), pad_shape=(64, 96),
                  padding_size=[0, 0, 0, 0])]
    with torch.no_grad():
        ref = orig(img)
        exact = (model.inference(img, metas) - ref).abs().max().item()  # slide
    assert exact <= 1e-5

    # 'model' keeps mmseg's eps: close to the original, not as close.
    fresh = revert_sync_batchnorm(MODELS.build(cfg.model))
    load_source_checkpoint(fresh, path, layernorm_eps='model')
    assert set(_ln_eps(fresh).values()) == {1e-6}
    fresh.eval()
    with torch.no_grad():
        stock = (fresh.inference(img, metas) - ref).abs().max().item()
    print(f'B0 logits gap to the original: {exact:.1e} (stock eps {stock:.1e})')
    assert exact < stock < 1e-3
    # The MoASE variant takes the same file.
    moase = Config.fromfile(method_config('moase'))
    model = revert_sync_batchnorm(MODELS.build(moase.model))
    load_source_checkpoint(model, path)
    assert _nvlabs_eps_ok(model)


# --------------------------------------------------------------------------
# Data and pipelines
# --------------------------------------------------------------------------
def _domain_dataset(cfg: Config, cond: str, pipeline) -> object:
    ds = copy.deepcopy(cfg.ctta_stream.dataloader.dataset)
    ds.update(copy.deepcopy(
        next(d for d in cfg.ctta_stream.domains if d['name'] == cond)['dataset']))
    ds['pipeline'] = pipeline
    return DATASETS.build(ds)


def test_stream_pipelines_on_acdc_layout(tmp_path):
    data = str(tmp_path / 'acdc')
    images = write_acdc_tree(data, num=3)
    cfg = Config.fromfile(
        write_stream_config(str(tmp_path / 'cfg.py'), data, STREAM))
    for cond in CONDITIONS:
        ds = _domain_dataset(cfg, cond, cfg.ctta_stream.dataloader.dataset.pipeline)
        # Sorted path order; reference images skipped.
        assert [ds.get_data_info(i)['img_path']
                for i in range(len(ds))] == images[cond]
    ds = _domain_dataset(cfg, 'night', cfg.ctta_stream.dataloader.dataset.pipeline)
    item = ds[0]
    assert tuple(item['inputs'].shape[1:]) == PLAIN_HW
    sample = item['data_samples']
    assert tuple(sample.gt_sem_seg.data.shape[1:]) == IMG_HW  # full resolution
    assert tuple(sample.ori_shape) == IMG_HW

    tta = _domain_dataset(cfg, 'night', cfg.ctta_stream.tta_pipeline)
    views = split_views(pseudo_collate([tta[0]]))
    assert len(views) == 14
    for k, v in enumerate(views):
        meta = v['data_samples'][0].metainfo
        r = RATIOS[k // 2]
        assert bool(meta['flip']) == (k % 2 == 1)
        assert tuple(v['inputs'][0].shape[1:]) == (
            round(IMG_HW[0] * 0.5 * r), round(IMG_HW[1] * 0.5 * r))
        assert tuple(v['data_samples'][0].gt_sem_seg.data.shape[1:]) == IMG_HW
    plain = views[cfg.ctta_plain_view_index]
    assert torch.equal(plain['inputs'][0], item['inputs'])
    assert not plain['data_samples'][0].metainfo['flip']
    # Scale-1 auto-detection would take the ratio-2.0 view (scale_factor 1.0,
    # the full 1920x1080 image): view_index is needed; the method configs set it.
    assert BaseCTTAMethod().plain_index(views) == 12
    assert BaseCTTAMethod(view_index=4).plain_view(
        pseudo_collate([tta[0]]))['inputs'][0].shape == item['inputs'].shape


# --------------------------------------------------------------------------
# CTTA runs with NVlabs files
# --------------------------------------------------------------------------
def _table(out: str) -> List[List[str]]:
    """The rows of check_data's table (first four columns), header first."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('domain '))
    rows = []
    for ln in lines[start:]:
        if not ln.strip() or ln.startswith('ok:'):
            break
        rows.append(ln.split()[:4])
    return rows


def _results(work: str) -> dict:
    with open(osp.join(work, 'ctta_results.json')) as f:
        return json.load(f)


def test_ctta_runs_take_nvlabs_file(tmp_path):
    data = str(tmp_path / 'acdc')
    images = write_acdc_tree(data)
    ckpts = nvlabs_tiny_ckpt(tmp_path)
    source_cfg = write_stream_config(
        str(tmp_path / 'source.py'), data,
        method_config('source'))

    # The original file, straight into tools/test_ctta.py.
    work_raw = str(tmp_path / 'raw')
    preds = str(tmp_path / 'preds')
    test_ctta.main([source_cfg, ckpts['raw'], '--work-dir', work_raw,
                    '--out-preds', preds])
    # The pre-converted file through the API: the same table.
    work_conv = str(tmp_path / 'conv')
    run_ctta(prepare_ctta_config(source_cfg, ckpts['converted'], work_conv))
    raw, conv = _results(work_raw), _results(work_conv)
    assert [p['domain'] for p in raw['passes']] == list(CONDITIONS)
    assert all(p['images'] == 2 for p in raw['passes'])
    for a, b in zip(raw['passes'], conv['passes']):
        assert a['mIoU'] == b['mIoU'] and a['aAcc'] == b['aAcc']
        assert a['per_class_iou'] == b['per_class_iou']
    # Predictions at the label's (original) resolution, not the 72x128 input.
    for cond in CONDITIONS:
        for img in images[cond]:
            rel = osp.relpath(img, osp.join(data, 'rgb_anon', cond, 'train'))
            out = Image.open(osp.join(preds, 'round1', cond, rel))
            assert out.size == (IMG_HW[1], IMG_HW[0])
    assert len(glob.glob(osp.join(preds, 'round1', '*', '*', '*.png'))) == 8

    # A multi-view method (14 views, view_index 4) with the original file; the
    # model in the runner has the original LayerNorm epsilons.
    cotta_cfg = write_stream_config(
        str(tmp_path / 'cotta.py'), data,
        method_config('cotta'))
    cfg = prepare_ctta_config(cotta_cfg, ckpts['raw'], str(tmp_path / 'cotta'))
    runner = Runner.from_cfg(cfg)
    runner.test()
    assert _nvlabs_eps_ok(runner.model)
    assert runner.test_loop.method.plain_index([None] * 14) == 4
    res = _results(str(tmp_path / 'cotta'))
    assert len(res['passes']) == 4
    assert all(np.isfinite(p['mIoU']) for p in res['passes'])


def test_nvlabs_refusals(tmp_path):
    # A B0-shaped original file against the B5 config: refused before any data.
    orig_b0 = OrigSegFormer(widths=[32, 64, 160, 256], depths=[2, 2, 2, 2],
                            embed=256, num_classes=19)
    b0 = str(tmp_path / 'segformer.b0.1024x1024.city.160k.pth')
    torch.save(dict(state_dict=orig_b0.state_dict()), b0)
    b5_cfg = method_config('moase', 'b5')
    assert 'moase_mit-b5_3rounds' in b5_cfg
    b5 = MODELS.build(Config.fromfile(b5_cfg).model)
    with pytest.raises(ValueError, match=r'looks like MiT-B0.*is MiT-B5'):
        load_source_checkpoint(b5, b0)
    # While a B5-shaped original (widths 64..512, depths 3/6/40/3, head 768)
    # fits the B5 config's model with only the adapters left out.
    orig_b5 = OrigSegFormer(widths=[64, 128, 320, 512], depths=[3, 6, 40, 3],
                            embed=768, num_classes=19).state_dict()
    converted = convert_nvlabs_segformer(dict(state_dict=orig_b5), target=b5)
    assert converted['meta']['mit_variant'] == 'B5'
    result = b5.load_state_dict(converted['state_dict'], strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all('.adapter.' in k
                                       for k in result.missing_keys)
    del b5, orig_b5, converted

    # With the tiny model: class count, unknown layout, ImageNet backbone.
    cfg = Config.fromfile(write_stream_config(
        str(tmp_path / 'tiny.py'), str(tmp_path),
        method_config('source')))
    model = MODELS.build(cfg.model)
    _, five = original_ckpt()  # 5 classes
    path = str(tmp_path / 'five.pth')
    torch.save(five, path)
    with pytest.raises(ValueError, match=r'has 5 classes, the model 19'):
        load_source_checkpoint(model, path)
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'foo.weight': torch.zeros(2)}), path)
    with pytest.raises(ValueError, match=r"unrecognised checkpoint layout.*"
                       r"backbone\.patch_embed1\.proj\.weight"):
        load_source_checkpoint(model, path)
    backbone_only = {k[len('backbone.'):]: v for k, v in five['state_dict'].items()
                     if k.startswith('backbone.')}
    torch.save(backbone_only, path)
    with pytest.raises(ValueError, match='ImageNet-pretrained'):
        load_source_checkpoint(model, path)
    # An mmseg 1.x file of another MiT depth is named as such too.
    conv = convert_nvlabs_segformer(original_ckpt(num_classes=19)[1])
    state = {k: v for k, v in conv['state_dict'].items()
             if not k.startswith('backbone.layers.1.1.1.')}
    torch.save(dict(state_dict=state), path)
    with pytest.raises(ValueError, match=r'depths \[1, 1, 1, 1\].*'
                       r'depths \[1, 2, 1, 1\]'):
        load_source_checkpoint(model, path)


# --------------------------------------------------------------------------
# Missing data: the loop's errors and tools/check_data.py
# --------------------------------------------------------------------------
def test_missing_label_and_empty_domain(tmp_path, capsys):
    data = str(tmp_path / 'acdc')
    images = write_acdc_tree(data, num=3)
    config = write_stream_config(
        str(tmp_path / 'source.py'), data,
        method_config('source'))
    ckpt = nvlabs_tiny_ckpt(tmp_path)['converted']
    opt = ['--cfg-options', f'ctta_stream.dataloader.dataset.data_root={data}']

    assert check_data.main([config] + opt) == 0
    out = capsys.readouterr().out
    assert _table(out) == [['domain', 'images', 'labels', 'missing']] + [
        [cond, '3', '3', '0'] for cond in CONDITIONS]
    assert 'ok: 4 domain(s), 12 images' in out

    # One label missing: the loop refuses before the stream starts.
    lbl = images['rain'][1].replace('rgb_anon', 'gt', 1).replace(
        '_rgb_anon.png', '_gt_labelTrainIds.png')
    with open(lbl, 'rb') as f:
        lbl_bytes = f.read()
    os.remove(lbl)
    with pytest.raises(FileNotFoundError, match='label .*not found'):
        run_ctta(prepare_ctta_config(config, ckpt, str(tmp_path / 'w1')))
    assert not osp.exists(osp.join(tmp_path, 'w1', 'ctta_results.json'))

    # An empty domain as well: check_data lists both, exits 1.
    for f in glob.glob(osp.join(data, 'rgb_anon', 'snow', 'train', 'G*', '*')):
        os.remove(f)
    assert check_data.main([config, '--show', '1'] + opt) == 1
    cap = capsys.readouterr()
    rows = _table(cap.out)
    assert rows[3:] == [['rain', '3', '2', '1'], ['snow', '0', '0', '0']]
    assert "domain 'rain': 1 of 3 images have no label file" in cap.err
    assert lbl in cap.err and 'gt_trainval.zip' in cap.err
    assert "domain 'snow' has no images: nothing matches '*_rgb_anon.png'" \
        in cap.err
    assert '2 of 4 domain(s)' in cap.err
    reports = check_data.check_config(
        config, {'ctta_stream.dataloader.dataset.data_root': data})
    assert [len(r.missing) for r in reports] == [0, 0, 1, 0]
    assert [r.ok for r in reports] == [True, True, False, False]

    # Labels complete again: the loop refuses the empty domain.
    with open(lbl, 'wb') as f:
        f.write(lbl_bytes)
    with pytest.raises(ValueError, match="domain 'snow' has no images"):
        run_ctta(prepare_ctta_config(config, ckpt, str(tmp_path / 'w2')))
    # A data root that does not exist.
    assert check_data.main(
        [config, '--cfg-options',
         f'ctta_stream.dataloader.dataset.data_root={tmp_path}/nowhere']) == 1
    err = capsys.readouterr().err
    assert 'does not exist' in err
    assert '--cfg-options ctta_stream.dataloader.dataset.data_root=' in err


def test_check_data_cityscapes_hint(tmp_path, capsys):
    data = str(tmp_path / 'city')
    make_domains(data, ('fog', 'night'), num=4)
    config = write_config(str(tmp_path / 'cfg.py'), data, 'Source')
    missing = sorted(glob.glob(osp.join(data, 'gtFine', 'night', '*', '*')))
    for p in missing:
        os.remove(p)
    assert check_data.main([config, '--show', '2']) == 1
    cap = capsys.readouterr()
    assert _table(cap.out)[2] == ['night', '4', '0', '4']
    assert 'csCreateTrainIdLabelImgs' in cap.err
    assert f'CITYSCAPES_DATASET={data}' in cap.err
    assert missing[0] in cap.err and missing[1] in cap.err
    assert missing[2] not in cap.err and '... and 2 more' in cap.err
    # An mmseg config without ctta_stream: its test_dataloader.
    path = str(tmp_path / 'plain.py')
    with open(path, 'w') as f:
        f.write(f'''test_dataloader = dict(dataset=dict(
    type='CityscapesDataset', data_root='{data}',
    data_prefix=dict(img_path='leftImg8bit/fog', seg_map_path='gtFine/fog'),
    pipeline=[dict(type='LoadImageFromFile')]))
''')
    assert check_data.main([path]) == 0
    assert _table(capsys.readouterr().out)[1] == ['test', '4', '4', '0']
    assert check_data.main([str(tmp_path / 'nope.py')]) == 2
