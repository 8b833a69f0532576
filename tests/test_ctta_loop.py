"""The CTTA loop: scoring, results files, stream order, errors."""
import copy
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from mmseg_moase.apis import prepare_ctta_config, run_ctta
from mmseg_moase.engine.loops.ctta_loop import CTTALoop
from mmseg_moase.methods import BaseCTTAMethod
from mmseg_moase.registry import METHODS

from ctta_helpers import make_domains, save_source_checkpoint, setup_run, \
    write_config
from helpers import load_results, write_cityscapes_tree


def test_source_stream_equals_plain_runner_test(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source', rounds=2)
    summary = run_ctta(cfg)
    with open(osp.join(paths['work'], 'ctta_results.json')) as f:
        res = json.load(f)
    passes = {(p['round'], p['domain']): p for p in res['passes']}
    assert len(passes) == 4
    for domain in ('fog', 'night'):
        plain = Config.fromfile(paths['config'])
        plain.test_dataloader = copy.deepcopy(plain.ctta_stream.dataloader)
        plain.test_dataloader.sampler = dict(type='DefaultSampler', shuffle=False)
        plain.test_dataloader.dataset.update(
            data_root=paths['data'],
            data_prefix=dict(img_path=f'leftImg8bit/{domain}',
                             seg_map_path=f'gtFine/{domain}'))
        plain.test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
        plain.test_cfg = dict(type='TestLoop')
        plain.load_from = paths['ckpt']
        plain.work_dir = str(tmp_path / f'plain_{domain}')
        metrics = Runner.from_cfg(plain).test()
        for r in range(2):  # Source never changes: same in both rounds
            assert passes[(r, domain)]['mIoU'] == pytest.approx(
                metrics['mIoU'], abs=1e-9)
            assert passes[(r, domain)]['aAcc'] == pytest.approx(
                metrics['aAcc'], abs=1e-9)
    assert summary['mIoU'] == pytest.approx(np.mean(
        [p['mIoU'] for p in res['passes']]))


@METHODS.register_module(force=True)
class CorruptedLabels(BaseCTTAMethod):
    """Test method: predicts the label, with class 1 turned into class 2 and the
    left quarter of each image set to class 0."""

    def step(self, data_batch):
        view = self.plain_view(data_batch)
        preds = []
        for s in view['data_samples']:
            p = s.gt_sem_seg.data[0].clone()
            p[p == 1] = 2
            p[p == 255] = 3
            p[:, :p.shape[1] // 4] = 0
            preds.append(p)
        return self.scored(view['data_samples'], preds)


def _hand_miou(preds, gts, num_classes=19):
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for p, g in zip(preds, gts):
        valid = g != 255
        for c in range(num_classes):
            inter[c] += np.sum((p == c) & (g == c) & valid)
            union[c] += np.sum(((p == c) | (g == c)) & valid)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = inter / union
    return np.round(np.nanmean(iou) * 100, 2), iou


def test_pass_table_equals_hand_computed_miou_with_absent_class(tmp_path):
    data = str(tmp_path / 'data')
    # 'fog' has every class; 'night' lacks classes 7..18 (absent from that pass).
    write_cityscapes_tree(data, split='fog', city='s', num=3, seed=1)
    write_cityscapes_tree(data, split='night', city='s', num=2, seed=2,
                          classes=[0, 1, 2, 3, 4, 5, 6, 255])
    config = write_config(str(tmp_path / 'cfg.py'), data, 'Source',
                          extra="ctta_method = dict(type='CorruptedLabels')")
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    cfg = prepare_ctta_config(config, ckpt, work_dir=str(tmp_path / 'w'))
    run_ctta(cfg)
    res = load_results(str(tmp_path / 'w' / 'ctta_results.json'))
    for rec in res['passes']:
        folder = osp.join(data, 'gtFine', rec['domain'], 's')
        gts = [np.array(Image.open(osp.join(folder, n)))
               for n in sorted(os.listdir(folder))]
        preds = []
        for g in gts:
            p = g.copy()
            p[p == 1] = 2
            p[p == 255] = 3
            p[:, :p.shape[1] // 4] = 0
            preds.append(p)
        miou, iou = _hand_miou(preds, gts)
        assert rec['mIoU'] == pytest.approx(miou, abs=1e-6)
        assert rec['images'] == len(gts)
        for k, name in enumerate(['road', 'sidewalk', 'building']):
            assert rec['per_class_iou'][name] == pytest.approx(
                np.round(iou[k] * 100, 2), nan_ok=True)
        if rec['domain'] == 'night':
            assert np.isnan(rec['per_class_iou']['bicycle'])
            assert np.isnan(iou[18])
    md = (tmp_path / 'w' / 'ctta_results.md').read_text()
    assert md.startswith('| Method | Round | fog | night | Mean |')
    csv_lines = (tmp_path / 'w' / 'ctta_results.csv').read_text().splitlines()
    assert csv_lines[0].startswith('method,round,domain,mIoU')
    assert len(csv_lines) == 3


def test_stream_visits_domains_and_images_in_sorted_order(tmp_path):
    seen = []

    @METHODS.register_module(force=True)
    class Recorder(BaseCTTAMethod):

        def step(self, data_batch):
            view = self.plain_view(data_batch)
            seen.extend(s.img_path for s in view['data_samples'])
            return self.scored(view['data_samples'],
                               [s.gt_sem_seg.data[0] for s in view['data_samples']])

    cfg, paths = setup_run(tmp_path, 'Source', domains=('snow', 'fog'), rounds=2,
                           extra="ctta_method = dict(type='Recorder')")
    run_ctta(cfg)
    doms = [p.split(os.sep)[-3] for p in seen]
    assert doms == ['snow'] * 3 + ['fog'] * 3 + ['snow'] * 3 + ['fog'] * 3
    assert seen[:3] == sorted(seen[:3])


def test_out_preds_writes_label_id_pngs(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    out = str(tmp_path / 'preds')
    cfg.test_cfg.out_preds = out
    cfg.test_cfg.out_preds_color = True
    run_ctta(cfg)
    f = osp.join(out, 'round1', 'fog', 'seq0', 'seq0_000000_000019_leftImg8bit.png')
    assert osp.isfile(f)
    ids = np.unique(np.array(Image.open(f)))
    # Cityscapes label ids of train ids (road=7, ..., bicycle=33), never train ids
    # like 1 or 2 that are not label ids of evaluated classes.
    assert set(ids.tolist()) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24,
                                  25, 26, 27, 28, 31, 32, 33}
    assert osp.isfile(osp.join(out, 'color', 'round1', 'fog', 'seq0',
                               'seq0_000000_000019_leftImg8bit.png'))


# ------------------------------------------------------------------ errors
def _run_expect(cfg, exc, match):
    with pytest.raises(exc, match=match):
        run_ctta(cfg)


def test_error_missing_data_root(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    cfg.test_cfg.domains[0].dataset.data_root = str(tmp_path / 'nowhere')
    _run_expect(cfg, FileNotFoundError, r"domain 'fog'.*nowhere.*does not exist")


def test_error_domain_without_images(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    os.makedirs(osp.join(paths['data'], 'leftImg8bit', 'empty'))
    cfg.test_cfg.domains[1].dataset.data_prefix.img_path = 'leftImg8bit/empty'
    _run_expect(cfg, ValueError, "domain 'night' has no images")


def test_error_image_without_label(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    os.remove(osp.join(paths['data'], 'gtFine', 'night', 'seq0',
                       'seq0_000001_000019_gtFine_labelTrainIds.png'))
    _run_expect(cfg, FileNotFoundError,
                "domain 'night': 1 image.*no label.*seq0_000001")


def test_error_bad_label_values_keeps_finished_passes(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    bad = osp.join(paths['data'], 'gtFine', 'night', 'seq0',
                   'seq0_000001_000019_gtFine_labelTrainIds.png')
    lab = np.array(Image.open(bad))
    lab[0, 0] = 33  # a label *id*, not a train id
    Image.fromarray(lab).save(bad)
    _run_expect(cfg, ValueError, r'seq0_000001.*values \[33\].*--resume')
    # The finished 'fog' pass is in the results; the state resumes at image 1.
    res = json.load(open(osp.join(paths['work'], 'ctta_results.json')))
    assert [p['domain'] for p in res['passes']] == ['fog']
    state = torch.load(osp.join(paths['work'], 'ctta_state.pth'),
                       weights_only=True)
    assert (state['pass_idx'], state['image_idx']) == (1, 1)


def test_error_label_size_mismatch(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    bad = osp.join(paths['data'], 'gtFine', 'fog', 'seq0',
                   'seq0_000002_000019_gtFine_labelTrainIds.png')
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(bad)
    _run_expect(cfg, ValueError, r'seq0_000002.*\(16, 64\).*\(32, 64\)')


def test_error_checkpoint_keys_do_not_fit(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    state = torch.load(paths['ckpt'], weights_only=True)
    sd = state['state_dict']
    sd['backbone.extra.weight'] = torch.zeros(1)
    for k in [k for k in sd if k.startswith('backbone.layers.3.')][:3]:
        sd.pop(k)
    torch.save(state, paths['ckpt'])
    _run_expect(cfg, ValueError,
                r'does not fit the model: 3 model keys missing.*backbone.layers.3'
                r'.*1 file keys the model lacks.*backbone.extra.weight')


def test_error_class_count_mismatch(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    state = torch.load(paths['ckpt'], weights_only=True)
    sd = state['state_dict']
    sd['decode_head.conv_seg.weight'] = sd['decode_head.conv_seg.weight'][:7]
    sd['decode_head.conv_seg.bias'] = sd['decode_head.conv_seg.bias'][:7]
    torch.save(state, paths['ckpt'])
    _run_expect(cfg, ValueError, 'class-count mismatch.*7 classes.*19')


def test_error_model_dataset_class_mismatch(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    cfg.model.decode_head.num_classes = 5
    save_source_checkpoint_cfg = Config.fromfile(paths['config'])
    save_source_checkpoint_cfg.model.decode_head.num_classes = 5
    p = str(tmp_path / 'five.py')
    save_source_checkpoint_cfg.dump(p)
    save_source_checkpoint(p, paths['ckpt'])
    _run_expect(cfg, ValueError, "class-count mismatch: domain 'fog' has 19")


def test_error_unknown_method(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    cfg.test_cfg.method = dict(type='Tnet')
    _run_expect(cfg, ValueError, r"unknown CTTA method 'Tnet'.*'TENT'")


def test_error_work_dir_not_writable(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source')
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    cfg.work_dir = str(blocker / 'sub')
    with pytest.raises((PermissionError, OSError), match='not writable|exists'):
        run_ctta(cfg)


def test_error_teacher_method_without_ema_hook(tmp_path):
    cfg, paths = setup_run(tmp_path, 'CoTTA')
    cfg.custom_hooks = []
    _run_expect(cfg, ValueError, 'EMATeacherHook')


def test_error_config_without_stream(tmp_path):
    p = tmp_path / 'bad.py'
    p.write_text("_base_ = 'mmseg::segformer/segformer_mit-b0_8xb1-160k_"
                 "cityscapes-1024x1024.py'\n")
    with pytest.raises(ValueError, match='declares no `ctta_stream`'):
        prepare_ctta_config(str(p), 'x.pth')


@METHODS.register_module(force=True)
class RecordAttention(BaseCTTAMethod):
    """Test method: records the attention layers' classes of the model it gets,
    and scores the label."""

    kinds: set = set()

    def setup(self, model):
        super().setup(model)
        from mmseg.models.backbones.mit import EfficientMultiheadAttention
        RecordAttention.kinds = {type(m).__name__ for m in model.modules()
                                 if isinstance(m, EfficientMultiheadAttention)}

    autocast: list = []

    def step(self, data_batch):
        RecordAttention.autocast.append(torch.is_autocast_enabled('cpu'))
        view = self.plain_view(data_batch)
        return self.scored(view['data_samples'],
                           [s.gt_sem_seg.data[0] for s in view['data_samples']])


@pytest.mark.parametrize('precision', [None, 'bf16'])
def test_loop_runs_steps_in_the_precision_asked(tmp_path, precision):
    cfg, _ = setup_run(tmp_path, 'Source', domains=('fog', ), num=2)
    cfg.test_cfg.method = dict(type='RecordAttention')
    if precision:
        cfg.test_cfg.precision = precision
    RecordAttention.autocast = []
    run_ctta(cfg)
    assert RecordAttention.autocast == [precision == 'bf16'] * 2
    with pytest.raises(ValueError, match=r'ctta_cfg.*precision'):
        CTTALoop(runner=None, dataloader={}, evaluator={}, method={},
                 domains=[], precision='fp16')


@pytest.mark.parametrize('skip', [None, False])
def test_loop_switches_attention_unless_told_not_to(tmp_path, skip):
    cfg, _ = setup_run(tmp_path, 'Source', domains=('fog', ), num=1)
    cfg.test_cfg.method = dict(type='RecordAttention')
    if skip is not None:
        cfg.test_cfg.skip_attention_weights = skip
    run_ctta(cfg)
    expected = ('EfficientMultiheadAttention' if skip is False else
                'EfficientMultiheadAttentionNoWeights')
    assert RecordAttention.kinds == {expected}
