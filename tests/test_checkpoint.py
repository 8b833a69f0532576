"""mmengine checkpoints round-trip under torch.load(weights_only=True)."""
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmseg_moase.utils import checkpoint_safe_globals

from conftest import TINY_MIT, config_path
from helpers import write_cityscapes_tree


def _train_cfg(data_root, work_dir, max_iters, **kw):
    cfg = Config.fromfile(
        config_path('_base_', 'models', 'segformer_mit-b0_moase.py'))
    cfg.model.backbone.update(TINY_MIT)
    cfg.model.decode_head.update(in_channels=[8, 16, 40, 64], channels=16,
                                 norm_cfg=dict(type='BN', requires_grad=True))
    cfg.model.data_preprocessor.size = (32, 64)
    cfg.model.test_cfg = dict(mode='whole')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='PackSegInputs')]
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(type='CityscapesDataset', data_root=data_root,
                     data_prefix=dict(img_path='leftImg8bit/train',
                                      seg_map_path='gtFine/train'),
                     pipeline=pipeline))
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader',
                'test_evaluator', 'test_cfg'):
        cfg.pop(key, None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
    cfg.param_scheduler = []
    cfg.optim_wrapper = dict(type='OptimWrapper',
                             optimizer=dict(type='AdamW', lr=1e-3))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook')
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    cfg.update(kw)
    return cfg


def test_runner_checkpoint_saves_and_loads_back_safely(tmp_path):
    data = str(tmp_path / 'data')
    write_cityscapes_tree(data, split='train', num=4)
    work = str(tmp_path / 'work')
    runner = Runner.from_cfg(_train_cfg(data, work, max_iters=2))
    runner.train()
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.exists(ckpt)

    # Plain safe load sees the message hub's HistoryBuffers and numpy values.
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert 'message_hub' in state and 'optimizer' in state
    assert any('.adapter.' in k for k in state['state_dict'])

    # mmengine resumes from it (loads meta, message hub, optimiser) and goes on.
    runner2 = Runner.from_cfg(
        _train_cfg(data, work, max_iters=4, resume=True, load_from=ckpt))
    runner2.train()
    assert runner2.iter == 4
    assert osp.exists(osp.join(work, 'iter_4.pth'))
    loaded = runner2.message_hub.get_scalar('train/loss')
    assert loaded.data[0].size >= 2  # history carried over from the first run


class NotAllowed:
    pass


def test_safe_loading_is_still_on_for_other_types(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'x': NotAllowed()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert NotAllowed not in checkpoint_safe_globals()


class Sneaky:
    """Pickles as getattr(HistoryBuffer, 'update'): not a statistics method."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, 'update'))


def test_getattr_is_only_allowed_for_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(path, weights_only=True)
