"""Tiny CTTA set-ups for tests: fabricated domains, a tiny SegFormer, config files."""
import json
import os.path as osp
import textwrap
from typing import Sequence

import torch
from mmengine.config import Config

from mmseg.registry import MODELS
from mmseg_moase.apis import prepare_ctta_config

from conftest import ROOT
from helpers import write_cityscapes_tree

TINY_MODEL_TEMPLATE = '''
model = dict(
    data_preprocessor=dict(size=None),
    backbone=dict(embed_dims=8, num_layers=[1, 2, 1, 1], drop_path_rate=0.0,
                  sr_ratios=[4, 2, 1, 1], init_cfg=None{backbone_extra}),
    decode_head=dict(in_channels=[8, 16, 40, 64], channels=16,
                     norm_cfg=dict(type='BN', requires_grad=True)),
    test_cfg=dict(mode='whole'))
'''
TINY_MODEL = TINY_MODEL_TEMPLATE.format(backbone_extra='')

PIPELINE = '''
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True)
         for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]
'''

METHOD_BASE = dict(Source='source', NormStat='norm_stat', TENT='tent',
                   CoTTA='cotta', MoASE='moase', ViDA='vida',
                   **{'MoASE++': 'moase_pp'})

# The tiny model's backbone with ViDA adapters (high rank 8: wider than the
# tiny model's first stages, as 128 is wider than MiT-B0's).
VIDA_BACKBONE = (",\n                  type='MixVisionTransformerViDA', "
                 "vida_low_rank=1, vida_high_rank=8")


def make_domains(root: str, domains: Sequence[str] = ('fog', 'night'),
                 num: int = 3, size=(32, 64)) -> None:
    for i, d in enumerate(domains):
        write_cityscapes_tree(root, split=d, city='seq0', num=num, size=size,
                              seed=i + 1)


def write_config(path: str, data_root: str, method: str,
                 domains: Sequence[str] = ('fog', 'night'), rounds: int = 1,
                 moase: bool = None, extra: str = '') -> str:
    """A CTTA config file inheriting the real model and method bases."""
    moase = method.startswith('MoASE') if moase is None else moase
    model_base = ('_base_/models/segformer_mit-b0_moase.py' if moase else
                  'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-'
                  '1024x1024.py')
    if moase:
        model_base = osp.join(ROOT, 'configs', model_base)
    method_base = osp.join(ROOT, 'configs', '_base_', 'methods',
                           METHOD_BASE[method] + '.py')
    doms = ',\n'.join(
        f"    dict(name='{d}', dataset=dict(data_root='{data_root}', "
        f"data_prefix=dict(img_path='leftImg8bit/{d}', "
        f"seg_map_path='gtFine/{d}')))" for d in domains)
    text = f'''
_base_ = ['{model_base}', '{method_base}']
{TINY_MODEL_TEMPLATE.format(backbone_extra=VIDA_BACKBONE if method == 'ViDA' else '')}
{PIPELINE}
ctta_stream = dict(
    rounds={rounds},
    domains=[
{doms}],
    dataloader=dict(batch_size=1, num_workers=0, persistent_workers=False,
                    dataset=dict(type='CityscapesDataset', pipeline=pipeline)),
    tta_pipeline=tta_pipeline)
ctta_cfg = dict(save_interval=1, progress_interval=0.0)
log_level = 'WARNING'
{textwrap.dedent(extra)}
'''
    with open(path, 'w') as f:
        f.write(text)
    return path


def save_source_checkpoint(config: str, path: str, seed: int = 0) -> None:
    """Random-initialised source weights of the config's model, as mmseg saves."""
    cfg = Config.fromfile(config)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)  # PyTorch's default init: random weights
    state = {k: v for k, v in model.state_dict().items() if '.adapter.' not in k}
    torch.save(dict(state_dict=state, meta=dict()), path)


def setup_run(tmp_path, method: str, domains=('fog', 'night'), rounds: int = 1,
              num: int = 3, extra: str = '', moase: bool = None, work='work',
              seed: int = 0):
    """Data + config + checkpoint; returns (prepared Config, paths dict)."""
    data = str(tmp_path / 'data')
    if not osp.isdir(data):
        make_domains(data, domains, num)
    config = write_config(str(tmp_path / f'{method}_cfg.py'), data, method,
                          domains, rounds, moase, extra)
    ckpt = str(tmp_path / 'source.pth')
    if not osp.isfile(ckpt):
        save_source_checkpoint(config, ckpt)
    cfg = prepare_ctta_config(config, ckpt, work_dir=str(tmp_path / work),
                              seed=seed)
    return cfg, dict(data=data, config=config, ckpt=ckpt,
                     work=str(tmp_path / work))


def read_results(work: str) -> dict:
    """A run's ``ctta_results.json``."""
    with open(osp.join(work, 'ctta_results.json')) as f:
        return json.load(f)


def pass_table(work: str) -> list:
    """(round, domain, mIoU, per-class IoU) of every pass of a run."""
    return [(p['round'], p['domain'], p['mIoU'], p['per_class_iou'])
            for p in read_results(work)['passes']]


def resume_table(work: str, telemetry=('loss.', 'drift.')) -> list:
    """What a resumed run must reproduce of an uninterrupted one: per pass the
    mIoU, per-class IoU, the student's mIoU and the telemetry entries starting
    with ``telemetry`` (module statistics of a pass resumed mid-way cover only
    the images after the resume, so they are left out by default)."""
    return [(p['round'], p['domain'], p['mIoU'], p['per_class_iou'],
             p['student_mIoU'],
             {k: v for k, v in p['telemetry'].items()
              if k.startswith(tuple(telemetry))})
            for p in read_results(work)['passes']]
