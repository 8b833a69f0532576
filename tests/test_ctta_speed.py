"""The optimised CTTA paths against the straightforward ones (issue #6).

Each optimisation is compared with a plain reference written here: the released
CoTTA teacher (mmseg ``predict`` per view, the anchor on all 14 views, stacked
softmax mean, ``argmax``), the student loss through ``segmentor.loss``, the
per-tensor EMA. Equal means bit-exact unless a tolerance is stated with its
reason. No timing assertions.
"""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.runner import load_checkpoint
from mmengine.structures import PixelData

from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from mmseg_moase.engine import EMATeacherHook, ema_update
from mmseg_moase.methods import CoTTA, MoASE
from mmseg_moase.methods.base import class_argmax, split_views
from mmseg_moase.methods.cotta import (label_size_logits, same_size_groups,
                                       segmentor_inference)
from mmseg_moase.models.adapters import MoASEAdapter
from mmseg_moase.models.ctta_parts import batch_groups
from mmseg_moase.models.losses.hp_loss import hp_loss

from conftest import randomize_adapters
from ctta_helpers import setup_run

# Running sum of the view softmaxes vs torch.stack(...).mean(0): the summation
# order may differ by one float32 rounding (observed <= 1e-8 on probabilities).
MEAN_ATOL = 1e-6
# One batched forward of a flip pair vs two forwards: the batched matmuls may
# accumulate in another order.
BATCH_ATOL = 1e-5


def _model_and_batch(tmp_path, method: str, tta: bool = True):
    cfg, paths = setup_run(tmp_path, method, num=1)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, paths['ckpt'], map_location='cpu', strict=False,
                    logger='silent')
    if method == 'MoASE':
        randomize_adapters(model)  # non-zero adapter outputs: the ASG matters
    ds_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    ds_cfg.update(cfg.test_cfg.domains[0].dataset)
    if tta:
        ds_cfg.pipeline = cfg.test_cfg.tta_pipeline
    return model, pseudo_collate([DATASETS.build(ds_cfg)[0]])


def reference_probs(method, model, batch):
    """The released teacher's per-view softmax: mmseg ``predict``'s logits."""
    return [p.seg_logits.data.softmax(0) for p in method.predict(model, batch)]


def reference_pseudo_labels(method, data_batch):
    """CoTTA's teacher as released: one forward per view, the anchor on every
    view (only the plain one is used), softmaxes stacked and averaged; a one-view
    teacher: predict, softmax, argmax."""
    if not method.multi_view:
        probs = reference_probs(method, method.teacher,
                                method.plain_view(data_batch))
        return [p.argmax(0) for p in probs], probs
    views = split_views(data_batch)
    plain = method.plain_index(views)
    per_view = [reference_probs(method, method.teacher, v) for v in views]
    anchor = [reference_probs(method, method.anchor, v) for v in views][plain]
    labels, means = [], []
    for i, a in enumerate(anchor):
        mean = torch.stack([pv[i] for pv in per_view]).mean(0)
        confident = a.max(0).values > method.threshold
        labels.append(torch.where(confident, per_view[plain][i].argmax(0),
                                  mean.argmax(0)))
        means.append(mean)
    return labels, means


def median_anchor_confidence(method, batch) -> float:
    """A gate threshold that sends half of the pixels down each branch."""
    views = split_views(batch)
    a = reference_probs(method, method.anchor, views[method.plain_index(views)])
    return float(a[0].max(0).values.median())


def reference_student_loss(method, view, labels, probs):
    """The student loss through mmseg's ``segmentor.loss`` (+ MoASE's HP)."""
    inputs, samples = method.preprocess(method.model, view)
    metas = []
    for s, lab in zip(samples, labels):
        m = SegDataSample(metainfo=s.metainfo)
        m.gt_sem_seg = PixelData(data=lab[None])
        metas.append(m)
    losses = dict(loss_ce=method.segmentor.loss(inputs, metas)['decode.loss_ce'])
    if isinstance(method, MoASE) and method.hp_mu > 0:
        losses['loss_hp'] = hp_loss(method.segmentor, method.teacher,
                                    method.hp_mu, method.hp_norm)
    return losses


# --------------------------------------------------------------- teacher
def test_label_size_logits_is_postprocess_without_argmax(tmp_path):
    seg, _ = _model_and_batch(tmp_path, 'CoTTA')
    logits = torch.randn(4, 19, 12, 20)
    metas = [dict(ori_shape=(30, 50), padding_size=[0, 0, 0, 0]),
             dict(ori_shape=(30, 50), flip=True, flip_direction='horizontal',
                  padding_size=[1, 2, 0, 3]),
             dict(ori_shape=(7, 9), flip=True, flip_direction='vertical'),
             dict(ori_shape=(24, 40), img_padding_size=[2, 0, 1, 0],
                  padding_size=[5, 5, 5, 5])]
    ours = label_size_logits(seg, logits, metas)
    ref = seg.postprocess_result(logits,
                                 [SegDataSample(metainfo=m) for m in metas])
    for a, r in zip(ours, ref):
        assert torch.equal(a, r.seg_logits.data)


@pytest.mark.parametrize('size', [(48, 64), (64, 96)])
def test_one_window_inference_equals_slide_inference(tmp_path, size):
    """A slide crop covering the input: one window, equal to mmseg's slide
    inference (softmax bit-equal); a larger input goes through mmseg."""
    seg, _ = _model_and_batch(tmp_path, 'MoASE')
    seg.eval()
    seg.test_cfg = ConfigDict(mode='slide', crop_size=(48, 64), stride=(32, 32))
    x = torch.randn(2, 3, *size)
    metas = [dict(ori_shape=size, img_shape=size) for _ in range(2)]
    with torch.no_grad():
        ours = segmentor_inference(seg, x, copy.deepcopy(metas))
        ref = seg.inference(x, copy.deepcopy(metas))
    assert torch.equal(ours.softmax(1), ref.softmax(1))


def test_class_argmax_equals_argmax_ties_and_nan_included():
    torch.manual_seed(0)
    x = torch.randn(19, 33, 47)
    assert torch.equal(class_argmax(x), x.argmax(0))
    ties = (x * 2).round()  # many equal maxima: the first class must win
    assert torch.equal(class_argmax(ties), ties.argmax(0))
    x[5, 3, 4] = x[0, 1, 1] = float('nan')
    assert torch.equal(class_argmax(x), x.argmax(0))


@pytest.mark.parametrize('method_type', ['CoTTA', 'MoASE'])
@pytest.mark.parametrize('batch_views', [False, True])
def test_teacher_equals_released_teacher(tmp_path, method_type, batch_views):
    model, batch = _model_and_batch(tmp_path, method_type)
    cls = dict(CoTTA=CoTTA, MoASE=MoASE)[method_type]
    method = cls(batch_views=batch_views)
    method.setup(model)
    method.threshold = median_anchor_confidence(method, batch)
    labels, means = method.teacher_pseudo_labels(copy.deepcopy(batch))
    ref_labels, ref_means = reference_pseudo_labels(method, copy.deepcopy(batch))
    assert len(split_views(batch)) == 14
    for lab, ref, m, rm in zip(labels, ref_labels, means, ref_means):
        assert torch.equal(lab, ref)
        atol = BATCH_ATOL if batch_views else MEAN_ATOL
        torch.testing.assert_close(m, rm, rtol=0, atol=atol)


# ----------------------------------------------- flip pairs in one batch
def test_same_size_groups_pairs_the_flips():
    def view(h, w):
        return dict(inputs=[torch.zeros(3, h, w)], data_samples=[None])
    views = [view(2, 4), view(2, 4), view(3, 6), view(3, 6), view(2, 4)]
    assert same_size_groups(views) == [[0, 1, 4], [2, 3]]


def test_asg_batch_groups_equals_separate_forwards():
    torch.manual_seed(0)
    adapter = MoASEAdapter(embed_dims=16, bottleneck=16, eta=1.0)
    randomize_adapters(adapter, std=0.5)
    with torch.no_grad():  # expert 0's ASG share follows the sign of x
        adapter.asg.weight.zero_()
        adapter.asg.weight[0].fill_(10.0)
    x = torch.cat([torch.rand(1, 6, 16) + 1, -torch.rand(1, 6, 16) - 1])
    separate = torch.cat([adapter(x[:1], (2, 3)), adapter(x[1:], (2, 3))])
    with batch_groups(adapter, 2):
        grouped = adapter(x, (2, 3))
    assert torch.equal(grouped, separate)
    assert adapter.batch_groups == 1
    # Without the groups the batch shares one keep ratio (expert 0 keeps 12 of
    # 16 instead of 16 and 4): the output differs.
    assert not torch.allclose(adapter(x, (2, 3)), separate)


# ---------------------------------------------------------------- memory
def test_single_view_teacher_has_no_anchor_and_equals_predict(tmp_path):
    model, batch = _model_and_batch(tmp_path, 'MoASE', tta=False)
    method = MoASE(teacher='single')
    method.setup(model)
    assert method.anchor is None
    labels, probs = method.teacher_pseudo_labels(copy.deepcopy(batch))
    ref = reference_probs(method, method.teacher, batch)
    # The released single-view path: predict, softmax, argmax. The labels come
    # from the logits here (equal but where the softmax rounds a near-tie of
    # two logits to one value: not on this input); probabilities only when the
    # loss reads them.
    assert torch.equal(labels[0], ref[0].argmax(0)) and probs is None
    method.loss = 'soft_ce'
    labels, probs = method.teacher_pseudo_labels(copy.deepcopy(batch))
    assert torch.equal(labels[0], ref[0].argmax(0))
    assert torch.equal(probs[0], ref[0])
    # Restore sources are the source values, in their own tensors.
    seg = method.segmentor
    for p, s in zip(method._restore_params, method._restore_sources):
        assert torch.equal(p, s) and p.data_ptr() != s.data_ptr()
    assert len(method._restore_params) == sum(
        1 for p in seg.parameters() if p.requires_grad)


def test_multi_view_restore_sources_are_the_anchor_weights(tmp_path):
    model, _ = _model_and_batch(tmp_path, 'MoASE')
    method = MoASE(trainable='adapters')
    method.setup(model)
    anchor = {p.data_ptr(): n for n, p in method.anchor.named_parameters()}
    names = [anchor[s.data_ptr()] for s in method._restore_sources]
    trainable = [n for n, p in method.segmentor.named_parameters()
                 if p.requires_grad]
    assert names == trainable and all('.adapter.' in n for n in names)
    for p, s in zip(method._restore_params, method._restore_sources):
        assert torch.equal(p, s)


# --------------------------------------------------------------- student
@pytest.mark.parametrize('method_type', ['CoTTA', 'MoASE'])
@pytest.mark.parametrize('banded', [False, True])
def test_student_loss_equals_segmentor_loss(tmp_path, method_type, banded):
    """The student's loss and gradients against ``segmentor.loss``: bit-exact
    for the full-size loss; with ``banded_loss=True`` the loss to rtol 1e-6 and
    every gradient tensor to within 1e-4 of its largest entry (the bands sum
    the pixels in another order; entries that nearly cancel differ relatively
    more)."""
    model, batch = _model_and_batch(tmp_path, method_type, tta=False)
    method = CoTTA(multi_view=False, banded_loss=banded)
    method.setup(model)
    torch.manual_seed(0)
    labels = [torch.randint(0, 19, (32, 64))]
    labels[0][:4] = 255  # ignored pixels
    results = []
    for loss_fn in (lambda: method.student_loss(batch, labels, None),
                    lambda: reference_student_loss(method, batch, labels, None)):
        model.zero_grad()
        loss = loss_fn()['loss_ce']
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in
                                        model.parameters() if p.grad is not None]))
    (l1, g1), (l2, g2) = results
    assert len(g1) == len(g2) > 0
    if not banded:
        assert torch.equal(l1, l2)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))
        return
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=0)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0,
                                   atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize('method_type, kwargs', [
    ('CoTTA', {}), ('MoASE', {}), ('MoASE', dict(teacher='single')),
    ('MoASE', dict(teacher='single', trainable='adapters'))])
def test_step_updates_equal_released_step(tmp_path, method_type, kwargs):
    """Scored outputs, student and teacher after two full iterations (step, EMA
    hook, stochastic restore) equal those of the released teacher and loss."""
    multi_view = kwargs.get('teacher') != 'single'
    model, batch = _model_and_batch(tmp_path, method_type, tta=multi_view)
    cls = dict(CoTTA=CoTTA, MoASE=MoASE)[method_type]
    results = []
    for released in (False, True):
        method = cls(restore_prob=0.3, **kwargs)
        method.setup(copy.deepcopy(model))
        if multi_view:
            method.threshold = median_anchor_confidence(method, batch)
        if released:
            method.teacher_pseudo_labels = lambda b, m=method: \
                reference_pseudo_labels(m, b)
            method.student_loss = lambda *a, m=method: \
                reference_student_loss(m, *a)
        EMATeacherHook(momentum=0.9).before_ctta(None, method)
        torch.manual_seed(3)
        outs = []
        for _ in range(2):
            out = method.step(copy.deepcopy(batch))
            outs.append(out[0].pred_sem_seg.data.clone())
            method.after_step()
        results.append((outs, method.segmentor.state_dict(),
                        method.teacher.state_dict()))
    (o1, s1, t1), (o2, s2, t2) = results
    assert all(torch.equal(a, b) for a, b in zip(o1, o2))
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
        assert torch.equal(t1[k], t2[k]), k


# -------------------------------------------------------------------- EMA
def _linear(weight, bias):
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.copy_(torch.tensor([bias]))
    return layer


def test_ema_update_against_hand_computed_values():
    """teacher <- m * teacher + (1 - m) * student, worked out by hand."""
    teacher, student = _linear([4.0, -8.0], 2.0), _linear([8.0, 0.0], -2.0)
    # m = 0.75 (exact in binary): 0.75 * 4 + 0.25 * 8 = 5,
    # 0.75 * -8 + 0.25 * 0 = -6, 0.75 * 2 + 0.25 * -2 = 1.
    ema_update(teacher, student, 0.75)
    assert teacher.weight.tolist() == [[5.0, -6.0]]
    assert teacher.bias.tolist() == [1.0]
    # Again: 0.75 * 5 + 2 = 5.75, 0.75 * -6 = -4.5, 0.75 * 1 - 0.5 = 0.25.
    ema_update(teacher, student, 0.75)
    assert teacher.weight.tolist() == [[5.75, -4.5]]
    assert teacher.bias.tolist() == [0.25]
    # The student is read, not written.
    assert student.weight.tolist() == [[8.0, 0.0]]
    assert student.bias.tolist() == [-2.0]
    # m = 0.999 (CoTTA's): the teacher keeps 99.9%, 1 -> 1.001 towards 2.
    teacher, student = _linear([1.0, 0.0], 0.0), _linear([2.0, 1000.0], -1.0)
    ema_update(teacher, student, 0.999)
    assert teacher.weight.tolist()[0] == pytest.approx([1.001, 1.0], rel=1e-6)
    assert teacher.bias.tolist() == pytest.approx([-0.001], rel=1e-4)


# ------------------------------------------------------------ the tool
def test_benchmark_tool_builds_the_14_views_at_the_requested_size():
    from mmengine.config import Config
    from tools.benchmark_ctta import (DEFAULT_CONFIGS, expand_variants,
                                      fabricate_batches)
    labels = [v.label for v in expand_variants(DEFAULT_CONFIGS['b0'],
                                               ['cotta', 'single',
                                                'single-adapters'])]
    assert labels == ['Source', 'NormStat', 'TENT', 'CoTTA',
                      'MoASE teacher=cotta', 'MoASE teacher=single',
                      'MoASE teacher=single trainable=adapters']
    cfg = Config.fromfile(DEFAULT_CONFIGS['b0'][-1])
    single = fabricate_batches(cfg, False, (32, 48), 2)
    assert len(single) == 2 and single[0]['inputs'][0].shape == (3, 32, 48)
    views = split_views(fabricate_batches(cfg, True, (32, 48), 1)[0])
    assert len(views) == 14
    plain = views[cfg.ctta_plain_view_index]
    assert plain['inputs'][0].shape == (3, 32, 48)
    assert not plain['data_samples'][0].flip
    # Labels (and the teacher's softmax) live at the loaded file's size.
    assert plain['data_samples'][0].ori_shape == (64, 96)
    assert 'gt_sem_seg' not in plain['data_samples'][0]
