"""Cityscapes-C: the WeatherCorruption transform, its dataset and its stream."""
import glob
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.config import Config
from PIL import Image

from mmseg.registry import DATASETS, TRANSFORMS
from mmseg_moase.apis import prepare_ctta_config, run_ctta
from mmseg_moase.datasets.cityscapes_c import CityscapesCDataset
from mmseg_moase.datasets.transforms import (CORRUPTIONS, WEATHER_CORRUPTIONS,
                                             WeatherCorruption)

from conftest import ROOT
from ctta_helpers import TINY_MODEL, save_source_checkpoint
from helpers import write_cityscapes_tree

STREAM = osp.join(ROOT, 'configs', '_base_', 'streams',
                  'cityscapes-to-cityscapes-c.py')
NAME = '3rounds_cityscapes-to-cityscapes-c-1024x512.py'
CONFIGS = [
    osp.join(ROOT, 'configs', 'baselines', f'{m}_mit-b5_{NAME}')
    for m in ('source', 'norm_stat', 'tent', 'cotta')
] + [osp.join(ROOT, 'configs', 'moase', f'moase_mit-b5_{NAME}')]
SIZE = (64, 128)  # fabricated "Cityscapes" frames (h, w); 2048x1024 in reality


def _scene(h=SIZE[0], w=SIZE[1]):
    """A structured BGR test frame: sky gradient, dark road, bright blocks."""
    rng = np.random.default_rng(7)
    img = np.zeros((h, w, 3), np.float32)
    img[:h // 2] = np.linspace(200, 120, h // 2)[:, None, None] * [1.0, 0.9, 0.8]
    img[h // 2:] = 60
    for k in range(6):
        x0 = k * w // 6
        img[h // 4:h // 2 + 4, x0 + 2:x0 + w // 12] = rng.uniform(20, 240, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def frame(tmp_path_factory):
    """A PNG on disk, loaded as LoadImageFromFile loads it (BGR uint8)."""
    folder = tmp_path_factory.mktemp('frames')
    path = str(folder / 'aachen_000000_000019_leftImg8bit.png')
    Image.fromarray(_scene()[..., ::-1]).save(path)
    return path


def _load(path):
    return LoadImageFromFile()(dict(img_path=path))


def _corrupt(path, corruption, severity=5, seed=0):
    t = TRANSFORMS.build(dict(type='WeatherCorruption', corruption=corruption,
                              severity=severity, seed=seed))
    return t(_load(path))['img']


def _luma(bgr):
    return bgr.astype(np.float64) @ [0.114, 0.587, 0.299]


# ------------------------------------------------------------ the transform
@pytest.mark.parametrize('corruption', CORRUPTIONS)
def test_deterministic_per_image_and_seed(frame, corruption):
    clean = _load(frame)['img']
    a = _corrupt(frame, corruption)
    b = _corrupt(frame, corruption)  # a new transform instance, same seed
    assert a.dtype == np.uint8 and a.shape == clean.shape
    assert a.flags['C_CONTIGUOUS']
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, clean), 'the corruption left the image as it was'
    if corruption in WEATHER_CORRUPTIONS:  # all random: the seed matters
        assert not np.array_equal(a, _corrupt(frame, corruption, seed=1))


def test_seeded_by_file_name_not_folder_or_order(frame, tmp_path):
    # Same basename elsewhere -> same pixels; another name -> other pixels.
    other_dir = tmp_path / 'elsewhere'
    other_dir.mkdir()
    same = str(other_dir / osp.basename(frame))
    renamed = str(tmp_path / 'aachen_000001_000019_leftImg8bit.png')
    shutil.copy(frame, same)
    shutil.copy(frame, renamed)
    t = WeatherCorruption('fog', 5)
    first = t(_load(frame))['img']
    t(_load(renamed))  # an image in between changes nothing
    assert np.array_equal(t(_load(same))['img'], first)
    assert not np.array_equal(t(_load(renamed))['img'], first)
    # the corruption and severity are part of the seed
    assert t.image_seed(frame) != WeatherCorruption('fog', 4).image_seed(frame)
    assert t.image_seed(frame) != WeatherCorruption('snow', 5).image_seed(frame)


def test_global_numpy_random_state_is_restored(frame):
    np.random.seed(123)
    before = np.random.get_state()
    for c in WEATHER_CORRUPTIONS:
        _corrupt(frame, c)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    expected = np.random.RandomState(123).random_sample(3)
    assert np.array_equal(np.random.random_sample(3), expected)


def test_restored_also_when_the_corruption_fails(monkeypatch, frame):
    from mmseg_moase.datasets.transforms import corruptions

    def boom(x, severity):
        np.random.random_sample(10)
        raise RuntimeError('boom')

    monkeypatch.setattr(corruptions, 'dark', boom)
    np.random.seed(5)
    with pytest.raises(RuntimeError, match='boom'):
        _corrupt(frame, 'dark')
    assert np.array_equal(np.random.random_sample(2),
                          np.random.RandomState(5).random_sample(2))


def test_each_weather_corruption_moves_its_statistic(frame):
    clean = _load(frame)['img']
    luma = _luma(clean)
    # night: darker, and more so at higher severity
    dark1, dark5 = (_luma(_corrupt(frame, 'dark', s)) for s in (1, 5))
    assert dark5.mean() < dark1.mean() < 0.8 * luma.mean()
    # fog: washed out (lower contrast) and brighter
    fog = _luma(_corrupt(frame, 'fog'))
    assert fog.std() < 0.8 * luma.std()
    # snow and frost: whiter
    assert _luma(_corrupt(frame, 'snow')).mean() > luma.mean() + 10
    assert _luma(_corrupt(frame, 'frost')).mean() > luma.mean() + 10
    # rain: near-vertical streaks; on a flat grey frame, the image varies more
    # across (horizontally) than along (vertically) the streaks
    flat = osp.join(osp.dirname(frame), 'flat_leftImg8bit.png')
    Image.fromarray(np.full(SIZE + (3, ), 90, np.uint8)).save(flat)
    rain = _luma(_corrupt(flat, 'rain'))
    dx = np.abs(np.diff(rain, axis=1)).mean()
    dy = np.abs(np.diff(rain, axis=0)).mean()
    assert dx > 2 * dy and rain.std() > 3
    # BGR in, BGR out: a red-only frame stays red under (colour-neutral) darkening
    red = osp.join(osp.dirname(frame), 'red_leftImg8bit.png')
    Image.fromarray(np.tile(np.uint8([200, 0, 0]), SIZE + (1, ))).save(red)
    out = _corrupt(red, 'dark', 1).reshape(-1, 3).mean(0)  # B, G, R
    assert out[2] > 80 and out[0] < 10 and out[1] < 10


def test_non_square_odd_sizes_keep_shape(tmp_path):
    for h, w in [(33, 47), (47, 33), (32, 32)]:
        path = str(tmp_path / f'x{h}_{w}_leftImg8bit.png')
        Image.fromarray(_scene(h, w)).save(path)
        for c in WEATHER_CORRUPTIONS:
            out = _corrupt(path, c)
            assert out.shape == (h, w, 3) and out.dtype == np.uint8


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize('corruption', ['fogg', 'glass_blur', 'gaussian_blur',
                                        'night', None])
def test_unknown_corruption_is_a_clear_error(corruption):
    with pytest.raises(ValueError, match=r'WeatherCorruption option `corruption` '
                       r"must be one of \[.*'dark'.*'fog'"):
        WeatherCorruption(corruption)


@pytest.mark.parametrize('severity', [0, 6, -1, 2.5, '3', True, None])
def test_bad_severity_is_a_clear_error(severity):
    with pytest.raises(ValueError, match='WeatherCorruption option `severity`'):
        WeatherCorruption('fog', severity)


def test_dataset_and_transform_input_errors(frame):
    with pytest.raises(ValueError, match='`corruption`'):
        CityscapesCDataset(corruption='sun', pipeline=[], lazy_init=True)
    with pytest.raises(ValueError, match='`severity`'):
        CityscapesCDataset(corruption='fog', severity=9, pipeline=[],
                           lazy_init=True)
    with pytest.raises(ValueError, match='LoadImageFromFile'):
        CityscapesCDataset(corruption='fog', pipeline=[dict(type='PackSegInputs')],
                           lazy_init=True)
    res = LoadImageFromFile(to_float32=True)(dict(img_path=frame))
    with pytest.raises(ValueError, match='uint8 HxWx3 BGR'):
        WeatherCorruption('fog')(res)
    small = dict(img=np.zeros((16, 64, 3), np.uint8), img_path='a.png')
    with pytest.raises(ValueError, match='at least 32x32'):
        WeatherCorruption('fog')(small)


# ------------------------------------------------------------ configs
def _domain_dataset(cfg, domain, pipeline=None, **over):
    ds = dict(cfg.ctta_stream.dataloader.dataset)
    ds.update(domain.dataset)
    if pipeline is not None:
        ds['pipeline'] = pipeline
    ds.update(over)
    return DATASETS.build(ds)


def _types(pipeline):
    return [type(t).__name__ for t in pipeline.transforms]


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_configs_load_and_build_their_pipelines(config, tmp_path):
    cfg = prepare_ctta_config(config, str(tmp_path / 'ckpt.pth'),
                              work_dir=str(tmp_path / 'w'))
    assert cfg.test_cfg.type == 'CTTALoop' and cfg.test_cfg.rounds == 3
    domains = cfg.test_cfg.domains
    assert [d.name for d in domains] == ['fog', 'night', 'rain', 'snow']
    assert [d.dataset.corruption for d in domains] == ['fog', 'dark', 'rain', 'snow']
    template = cfg.test_dataloader.dataset
    assert template.type == 'CityscapesCDataset' and template.severity == 5
    assert template.data_root == 'data/cityscapes'
    assert template.data_prefix == dict(img_path='leftImg8bit/val',
                                        seg_map_path='gtFine/val')
    assert cfg.ctta_stream.plain_view_index == 4
    assert cfg.ctta_method.get('view_index') is None
    is_moase = cfg.ctta_method.type == 'MoASE'
    assert (cfg.model.backbone.type == 'MixVisionTransformerMoASE') == is_moase
    assert cfg.model.backbone.num_layers == [3, 6, 40, 3]  # MiT-B5
    for d in domains:  # no data needed: lazy_init does not list files
        ds = _domain_dataset(cfg, d, lazy_init=True)
        assert _types(ds.pipeline) == ['LoadImageFromFile', 'WeatherCorruption',
                                       'Resize', 'LoadAnnotations',
                                       'PackSegInputs']
        wc = ds.pipeline.transforms[1]
        assert (wc.corruption, wc.severity, wc.seed) == (d.dataset.corruption, 5, 0)
        assert ds.pipeline.transforms[2].scale_factor == (0.5, 0.5)
        tta = _domain_dataset(cfg, d, cfg.test_cfg.tta_pipeline, lazy_init=True)
        assert _types(tta.pipeline) == ['LoadImageFromFile', 'WeatherCorruption',
                                        'TestTimeAug']
        views = tta.pipeline.transforms[2].subroutines
        assert len(views) == 14
        plain = views[4].transforms
        assert plain[0].scale_factor == (0.5, 0.5) and plain[1].prob == 0.
    if 'cotta' in config:  # the one file the loop's method checks depend on
        assert any(h['type'] == 'EMATeacherHook' for h in cfg.custom_hooks)


def test_plain_view_of_tta_pipeline_equals_test_pipeline(tmp_path):
    """Same file -> the same corrupted pixels in the single-view pipeline and in
    the multi-view pipeline's plain view (view 4); labels at full resolution."""
    data = str(tmp_path / 'data')
    write_cityscapes_tree(data, split='val', city='aachen', num=1, size=SIZE)
    cfg = Config.fromfile(STREAM)
    domain = cfg.ctta_stream.domains[1]  # night
    kw = dict(data_root=data)
    single = _domain_dataset(cfg, domain, **kw)[0]
    views = _domain_dataset(cfg, domain, cfg.ctta_stream.tta_pipeline, **kw)[0]
    clean = _domain_dataset(cfg, domain, corruption=None, **kw)[0]
    assert len(views['inputs']) == 14
    assert single['inputs'].shape == (3, SIZE[0] // 2, SIZE[1] // 2)
    assert torch.equal(views['inputs'][4], single['inputs'])
    assert views['data_samples'][4].gt_sem_seg.data.shape[-2:] == SIZE
    assert single['data_samples'].gt_sem_seg.data.shape[-2:] == SIZE
    assert not torch.equal(clean['inputs'], single['inputs'])
    assert clean['inputs'].float().mean() > single['inputs'].float().mean()


# ------------------------------------------------------------ the stream
def test_cityscapes_c_stream_runs_through_the_ctta_loop(tmp_path):
    data = str(tmp_path / 'data')
    write_cityscapes_tree(data, split='val', city='aachen', num=1, size=SIZE)
    write_cityscapes_tree(data, split='val', city='bonn', num=1, size=SIZE,
                          seed=3)
    method = osp.join(ROOT, 'configs', '_base_', 'methods', 'tent.py')
    config = str(tmp_path / 'tent_cityscapes_c_tiny.py')
    with open(config, 'w') as f:
        f.write(f'''
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
          '{STREAM}', '{method}']
{TINY_MODEL}
ctta_stream = dict(
    rounds=1,
    domains=[dict(name='fog', dataset=dict(corruption='fog')),
             dict(name='night', dataset=dict(corruption='dark'))],
    dataloader=dict(num_workers=0, dataset=dict(data_root='{data}', severity=3)))
ctta_cfg = dict(save_interval=1, progress_interval=0.0)
log_level = 'WARNING'
''')
    ckpt = str(tmp_path / 'source.pth')
    save_source_checkpoint(config, ckpt)
    cfg = prepare_ctta_config(config, ckpt, work_dir=str(tmp_path / 'work'))
    assert cfg.test_dataloader.dataset.severity == 3
    summary = run_ctta(cfg)
    with open(tmp_path / 'work' / 'ctta_results.json') as f:
        res = json.load(f)
    passes = res['passes']
    got = [(p['round'], p['domain']) for p in passes]
    assert got == [(0, 'fog'), (0, 'night')]
    assert all(p['images'] == 2 for p in passes)
    assert all(np.isfinite(p['mIoU']) for p in passes)
    assert np.isfinite(summary['mIoU'])
    md = (tmp_path / 'work' / 'ctta_results.md').read_text()
    assert '| fog | night |' in md
    assert not glob.glob(osp.join(data, '**', '*fog*'), recursive=True)
    assert sorted(os.listdir(osp.join(data, 'leftImg8bit', 'val'))) == [
        'aachen', 'bonn']
