"""Cityscapes interoperability: exported predictions scored by cityscapesscripts,
train-id label preparation, and the error for missing train-id labels."""
import glob
import json
import os
import os.path as osp
import re
from typing import Dict, List, Tuple

import numpy as np
import pytest
from mmengine.runner import Runner
from PIL import Image

from mmseg.registry import METRICS
from mmseg_moase.apis import run_ctta
from mmseg_moase.datasets.cityscapes_prep import (create_train_id_labels,
                                                  find_missing_train_id_labels)
from mmseg_moase.evaluation import CTTAIoUMetric, summed_areas

from ctta_helpers import setup_run
from helpers import load_results, write_cityscapes_tree


#: Per pass, in pass order: mmseg IoUMetric's unrounded per-class IoU (0-1,
#: float32, NaN = class absent from label and prediction) and the same ratio of
#: its summed intersection / union areas in float64.
_EXACT_IOU: List[Tuple[np.ndarray, np.ndarray]] = []


@METRICS.register_module(force=True)
class ExactIoURecorder(CTTAIoUMetric):
    """CTTAIoUMetric that also records its unrounded per-class IoU (test only)."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        areas = summed_areas(results)
        ret = self.total_area_to_metrics(*areas, ['mIoU'])
        inter, union = (a.double().numpy() for a in areas[:2])
        with np.errstate(invalid='ignore', divide='ignore'):
            iou64 = inter / union
        _EXACT_IOU.append((np.asarray(ret['IoU'], np.float64), iou64))
        return metrics


def _cs_eval():
    from cityscapesscripts.evaluation import \
        evalPixelLevelSemanticLabeling as cs_eval
    return cs_eval


def _cs_args(prediction_path: str):
    """A fresh copy of cityscapesscripts' module-level ``args`` for one pass."""
    cs_eval = _cs_eval()
    args = cs_eval.CArgs()
    args.__dict__.update(vars(cs_eval.args))
    args.evalInstLevelScore = False  # needs *_instanceIds.png; not the mIoU
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.bold = args.nocol = ''
    args.predictionPath = prediction_path
    args.predictionWalk = None
    return args


def _write_label_ids(data: str, domain: str) -> List[str]:
    """Write ``*_gtFine_labelIds.png`` beside each ``*_gtFine_labelTrainIds.png``.

    Train id -> Cityscapes label id (road 0 -> 7, ..., bicycle 18 -> 33); the
    ignore value 255 -> 0 ('unlabeled', ignoreInEval).
    """
    from cityscapesscripts.helpers.labels import trainId2label
    lut = np.zeros(256, np.uint8)
    for train_id in range(19):
        lut[train_id] = trainId2label[train_id].id
    out = []
    for f in sorted(glob.glob(osp.join(data, 'gtFine', domain, '*',
                                       '*_gtFine_labelTrainIds.png'))):
        dst = f.replace('_labelTrainIds.png', '_labelIds.png')
        Image.fromarray(lut[np.array(Image.open(f))]).save(dst)
        out.append(dst)
    return out


@pytest.mark.parametrize('method,rounds', [('Source', 1), ('TENT', 2)])
def test_exported_predictions_scored_by_cityscapesscripts(tmp_path, method,
                                                          rounds):
    """cityscapesscripts' mIoU of our ``out_preds`` PNGs equals our pass mIoU.

    Correspondence of the two computations, for predictions that only contain
    the 19 evaluated classes (our exported label-ID PNGs) and ground truth whose
    train id 255 is written as label id 0 ('unlabeled', ``ignoreInEval``):

    * cityscapesscripts (``evaluateImgLists`` -> ``getIouScoreForLabel``) builds
      a label-id confusion matrix C[gt, pred] over all pixels and scores each
      class L with ``ignoreInEval=False`` (exactly the 19 train-id classes) as
      TP = C[L, L], FN = sum_j C[L, j] - TP, FP = sum over gt rows g that are
      not ignored and != L of C[g, L]; IoU = TP / (TP + FP + FN), NaN if the
      denominator is 0. Ignored labels score NaN. ``averageScoreClasses`` is
      the mean over the classes whose IoU is not NaN.
    * mmseg's ``IoUMetric`` (our ``CTTAIoUMetric``) drops pixels whose train-id
      label is 255 (= exactly the ignored-label pixels), then per class
      intersect = TP and union = pred area + label area - intersect =
      TP + FP + FN (label area - intersect = FN, also counting any pixel of L
      predicted as an ignored label; our exports never contain one); IoU =
      intersect / union, NaN for 0 / 0; mIoU = ``nanmean`` over the 19
      classes.
    * So both average the same per-class IoUs over the same set: the classes
      present in the (non-ignored) label or in the prediction of the pass.
      A class only predicted counts as 0 in both; a class in neither is left
      out of both.

    Agreement, in percent points (0-100 scale): the per-class IoUs from our
    pass's summed areas, in float64, give cityscapesscripts' mean to float64
    precision (asserted <= 1e-9; class by class <= 1e-12 on 0-1); mmseg's own
    unrounded mean is computed in float32 (``torch.histc`` areas), within
    1e-5 (measured ~1e-8); ``ctta_results.json`` rounds mIoU to 2 decimals as
    mmseg does, so it agrees within the rounding, asserted <= 0.005 + 1e-9.
    """
    data = str(tmp_path / 'data')
    # 'fog' has every class and ignore pixels; 'night' only classes 0..6 (so
    # classes absent from the label are either predicted (IoU 0) or NaN).
    write_cityscapes_tree(data, split='fog', city='seq0', num=2, seed=1,
                          classes=list(range(19)) + [255])
    write_cityscapes_tree(data, split='night', city='seq0', num=2, seed=2,
                          classes=[0, 1, 2, 3, 4, 5, 6, 255])
    gts = {d: _write_label_ids(data, d) for d in ('fog', 'night')}
    extra = "ctta_evaluator = dict(type='ExactIoURecorder', iou_metrics=['mIoU'])"
    cfg, paths = setup_run(tmp_path, method, rounds=rounds, extra=extra)
    out = str(tmp_path / 'preds')
    cfg.test_cfg.out_preds = out
    _EXACT_IOU.clear()
    run_ctta(cfg)
    passes = load_results(osp.join(paths['work'], 'ctta_results.json'))['passes']
    assert len(passes) == len(_EXACT_IOU) == 2 * rounds

    from cityscapesscripts.helpers.labels import id2label, trainId2label
    cs_eval = _cs_eval()
    predicted_ids = set()
    diffs: List[Tuple[float, float, float]] = []
    absent_kinds = set()  # 'nan' / 'zero' IoU of classes absent from a label
    for rec, (mmseg_iou, exact) in zip(passes, _EXACT_IOU):
        pass_dir = osp.join(out, f'round{rec["round"] + 1}', rec['domain'])
        args = _cs_args(pass_dir)
        # cityscapesscripts' own matching: <city>_<seq>_<frame>*.png under the
        # pass folder for each *_gtFine_labelIds.png.
        preds = [cs_eval.getPrediction(args, gt) for gt in gts[rec['domain']]]
        assert [osp.relpath(p, pass_dir) for p in preds] == [
            osp.join('seq0', osp.basename(g).replace('_gtFine_labelIds.png',
                                                     '_leftImg8bit.png'))
            for g in gts[rec['domain']]]
        for p in preds:
            predicted_ids |= set(np.unique(np.array(Image.open(p))).tolist())
        res = cs_eval.evaluateImgLists(preds, gts[rec['domain']], args)
        cs_miou = res['averageScoreClasses'] * 100
        print(f"{method} R{rec['round'] + 1} {rec['domain']}: cityscapesscripts "
              f"{cs_miou:.6f}, ctta_results.json {rec['mIoU']:.2f}")
        ours_exact = float(np.nanmean(exact)) * 100
        ours_unrounded = float(np.nanmean(mmseg_iou)) * 100
        diffs.append((abs(cs_miou - rec['mIoU']),
                      abs(cs_miou - ours_unrounded), abs(cs_miou - ours_exact)))
        assert 0 < cs_miou < 100
        assert abs(cs_miou - ours_exact) <= 1e-9
        assert abs(cs_miou - ours_unrounded) <= 1e-5
        assert abs(cs_miou - rec['mIoU']) <= 0.005 + 1e-9
        # Class by class: same IoU, NaN in the same places; the ignored
        # labels are NaN in cityscapesscripts and absent from ours.
        for train_id in range(19):
            name = trainId2label[train_id].name
            cs_iou = res['classScores'][name]
            assert (np.isnan(cs_iou) and np.isnan(exact[train_id])) or \
                abs(cs_iou - exact[train_id]) <= 1e-12, name
            assert rec['per_class_iou'][name] == pytest.approx(
                cs_iou * 100, abs=0.005 + 1e-9, nan_ok=True)
        assert all(np.isnan(v) for k, v in res['classScores'].items()
                   if id2label[res['labels'][k]].ignoreInEval)
        if rec['domain'] == 'night':
            # Classes 7..18 are absent from this label: each is NaN (not
            # predicted either) or 0 (predicted) in both computations.
            for train_id in range(7, 19):
                assert np.isnan(exact[train_id]) or exact[train_id] == 0
                absent_kinds.add('nan' if np.isnan(exact[train_id]) else 'zero')
    # Both kinds of absent class occurred, so the averaging sets were tested.
    assert absent_kinds == {'nan', 'zero'}
    # Not trivial: several classes predicted, only evaluated label ids.
    eval_ids = {trainId2label[t].id for t in range(19)}
    assert predicted_ids <= eval_ids
    assert len(predicted_ids) >= 3, predicted_ids
    print(f'{method}: |cs - ctta_results.json|, |cs - mmseg unrounded|, '
          f'|cs - float64| per pass (percent points): {diffs}; predicted label '
          f'ids {sorted(predicted_ids)}')


# ------------------------------------------------- train-id label preparation
def _poly(x0: int, y0: int, x1: int, y1: int) -> List[List[int]]:
    """A rectangle as a polygon; PIL fills the corners inclusively."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _write_polygons(root: str, split: str, city: str, stem: str, h: int, w: int,
                    objects: List[dict]) -> None:
    """An image and its ``*_gtFine_polygons.json`` (the Cityscapes format)."""
    img_dir = osp.join(root, 'leftImg8bit', split, city)
    gt_dir = osp.join(root, 'gtFine', split, city)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(
        osp.join(img_dir, f'{stem}_leftImg8bit.png'))
    with open(osp.join(gt_dir, f'{stem}_gtFine_polygons.json'), 'w') as f:
        json.dump(dict(imgHeight=h, imgWidth=w, objects=objects), f)


def _fabricate_polygon_tree(root: str) -> Dict[str, np.ndarray]:
    """Two annotated val images (+ one train image without annotations);
    returns the hand-computed train-id label of each annotated image."""
    h, w = 16, 32
    # Image 1: sky on top, road on the bottom half with a car (drawn after the
    # road, so on top of it), the ego vehicle's bonnet on the last row, a
    # deleted object and a license plate (id -1: never drawn); rows 4..7 are
    # not covered (-> unlabeled, 255).
    _write_polygons(root, 'val', 'aachen', 'aachen_000000_000019', h, w, [
        dict(label='sky', polygon=_poly(0, 0, 31, 3)),
        dict(label='road', polygon=_poly(0, 8, 31, 15)),
        dict(label='car', polygon=_poly(4, 10, 11, 13)),
        dict(label='person', polygon=_poly(20, 9, 22, 12), deleted=1),
        dict(label='license plate', polygon=_poly(6, 12, 9, 13)),
        dict(label='ego vehicle', polygon=_poly(0, 15, 31, 15)),
    ])
    exp1 = np.full((h, w), 255, np.uint8)
    exp1[0:4] = 10           # sky
    exp1[8:16] = 0           # road
    exp1[10:14, 4:12] = 13   # car
    exp1[15] = 255           # ego vehicle (trainId 255)
    # Image 2: building, a 'cargroup' (-> car) and vegetation over it.
    _write_polygons(root, 'val', 'aachen', 'aachen_000001_000019', h, w, [
        dict(label='building', polygon=_poly(0, 0, 31, 15)),
        dict(label='cargroup', polygon=_poly(0, 10, 15, 15)),
        dict(label='vegetation', polygon=_poly(24, 0, 31, 7)),
    ])
    exp2 = np.full((h, w), 2, np.uint8)
    exp2[10:16, 0:16] = 13
    exp2[0:8, 24:32] = 8
    # A train image whose polygon file is absent.
    img_dir = osp.join(root, 'leftImg8bit', 'train', 'bremen')
    os.makedirs(img_dir)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(
        osp.join(img_dir, 'bremen_000000_000019_leftImg8bit.png'))
    return {'aachen_000000_000019': exp1, 'aachen_000001_000019': exp2}


@pytest.mark.parametrize('old_env', [None, '/somewhere/else'])
def test_create_train_id_labels_from_polygons(tmp_path, monkeypatch, old_env):
    root = str(tmp_path / 'cityscapes')
    expected = _fabricate_polygon_tree(root)
    if old_env is None:
        monkeypatch.delenv('CITYSCAPES_DATASET', raising=False)
    else:
        monkeypatch.setenv('CITYSCAPES_DATASET', old_env)
    gt = osp.join(root, 'gtFine')
    label = osp.join(gt, 'val', 'aachen', '{}_gtFine_labelTrainIds.png')
    train_missing = osp.join(gt, 'train', 'bremen',
                             'bremen_000000_000019_gtFine_labelTrainIds.png')
    assert find_missing_train_id_labels(root, 'val') == [
        label.format(s) for s in sorted(expected)]
    assert len(find_missing_train_id_labels(root)) == 3

    written = create_train_id_labels(root)

    assert sorted(written) == [label.format(s) for s in sorted(expected)]
    assert os.environ.get('CITYSCAPES_DATASET') == old_env  # restored
    for stem, exp in expected.items():
        got = np.array(Image.open(label.format(stem)))
        np.testing.assert_array_equal(got, exp, err_msg=stem)
    assert find_missing_train_id_labels(root, 'val') == []
    assert find_missing_train_id_labels(root) == [train_missing]
    with pytest.raises(FileNotFoundError, match='leftImg8bit.test'):
        find_missing_train_id_labels(root, 'test')


def test_create_train_id_labels_without_polygons(tmp_path, monkeypatch):
    monkeypatch.setenv('CITYSCAPES_DATASET', '/somewhere/else')
    root = str(tmp_path / 'cs')
    write_cityscapes_tree(root, split='val', city='lindau', num=1)
    os.remove(osp.join(root, 'gtFine', 'val', 'lindau',
                       'lindau_000000_000019_gtFine_labelTrainIds.png'))
    assert len(find_missing_train_id_labels(root, 'val')) == 1
    with pytest.raises(FileNotFoundError,
                       match=r'no polygon annotations.*_gtFine_polygons\.json.*'
                       r'gtFine_trainvaltest\.zip.*prepare_cityscapes\.py'):
        create_train_id_labels(root)
    assert os.environ['CITYSCAPES_DATASET'] == '/somewhere/else'


def test_prepare_cityscapes_cli(tmp_path, capsys):
    from tools.prepare_cityscapes import main
    root = str(tmp_path / 'cityscapes')
    expected = _fabricate_polygon_tree(root)
    assert main([root, '--split', 'val', '--check']) == 1
    assert '2 *_gtFine_labelTrainIds.png missing (val: 2)' in \
        capsys.readouterr().out
    assert main([root, '--split', 'val']) == 0
    text = capsys.readouterr().out
    assert 'wrote 2 ' in text and 'every image has its' in text
    for stem in expected:
        assert osp.isfile(osp.join(root, 'gtFine', 'val', 'aachen',
                                   f'{stem}_gtFine_labelTrainIds.png'))
    # The train image has no polygon file: still missing afterwards.
    assert main([root]) == 1
    assert 'train: 1' in capsys.readouterr().out
    assert main([str(tmp_path / 'nowhere')]) == 2


# ----------------------------------------------- the error in a CTTA stream
def test_stream_with_missing_train_id_labels_says_how_to_make_them(tmp_path):
    cfg, paths = setup_run(tmp_path, 'Source', domains=('night',), num=2)
    data = paths['data']
    missing = [osp.join(data, 'gtFine', 'night', 'seq0',
                        f'seq0_00000{i}_000019_gtFine_labelTrainIds.png')
               for i in range(2)]
    for f in missing:
        os.remove(f)
    cmd = f'python tools/prepare_cityscapes.py {data}'
    runner = Runner.from_cfg(cfg)  # one runner: the loop rebuilds the datasets
    with pytest.raises(FileNotFoundError) as info:
        runner.test()
    msg = str(info.value)
    assert re.search(r"domain 'night': 2 image\(s\) have no label file, first "
                     rf'missing: {re.escape(missing[0])}\.', msg), msg
    assert cmd in msg and f'CITYSCAPES_DATASET={data} csCreateTrainIdLabelImgs' \
        in msg
    assert 'seq0_000000_000019_gtFine_polygons.json is missing too' in msg
    assert 'gtFine_trainvaltest.zip' in msg

    # With the polygon files there, the message only gives the command, and
    # the command's helper makes the stream run.
    for f in missing:
        with open(f.replace('_labelTrainIds.png', '_polygons.json'), 'w') as fp:
            json.dump(dict(imgHeight=32, imgWidth=64, objects=[
                dict(label='road', polygon=_poly(0, 16, 63, 31))]), fp)
    with pytest.raises(FileNotFoundError) as info:
        runner.test()
    assert cmd in str(info.value) and 'missing too' not in str(info.value)
    create_train_id_labels(data)
    label = np.array(Image.open(missing[0]))
    assert (label[16:] == 0).all() and (label[:16] == 255).all()
    runner.test()
    with open(osp.join(paths['work'], 'ctta_results.json')) as f:
        assert json.load(f)['passes'][0]['images'] == 2
