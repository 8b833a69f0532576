# Cityscapes -> Cityscapes-C stream, for users without ACDC: the Cityscapes val
# images (500, 2048x1024, sorted path order) under ImageNet-C-style weather
# corruptions, one domain per corruption, Fog -> Night -> Rain -> Snow, 3 rounds,
# no reset. Needs only Cityscapes (leftImg8bit/val and the gtFine/val
# *_labelTrainIds.png of cityscapesscripts' csCreateTrainIdLabelImgs).
#
# Corruptions (mmseg_moase/datasets/transforms/corruptions.py):
#   fog   -> imagecorruptions `fog` (plasma-fractal haze, ImageNet-C)
#   night -> our `dark`: exposure scaled down + sensor noise (ImageNet-C has no
#            night; its `brightness` only brightens)
#   rain  -> our `rain`: near-vertical motion-blurred streaks over a dimmed, hazy
#            image (ImageNet-C has no rain; its `spatter` is mud at severity 4-5)
#   snow  -> imagecorruptions `snow`
#   frost -> imagecorruptions `frost` (not in the default list)
# Each image's corruption is seeded from (seed, corruption, severity, file name):
# the same pixels in every run, every pipeline and every round.
#
# Severity 5 (the strongest, as CTTA papers use ImageNet-C/CIFAR-C). Change it, the
# seed, the domains or the data root in a config that inherits this file, e.g.
#   ctta_stream = dict(
#       rounds=1,
#       dataloader=dict(dataset=dict(severity=3, data_root='/data/cityscapes')),
#       domains=[dict(name='fog', dataset=dict(corruption='fog')),
#                dict(name='frost', dataset=dict(corruption='frost'))])
# or on the command line: --cfg-options ctta_stream.dataloader.dataset.severity=3
# (the top-level variables below are substituted when this file is read: changing
# them from an inheriting config or --cfg-options has no effect).
cityscapes_c_data_root = 'data/cityscapes'
cityscapes_c_severity = 5
cityscapes_c_seed = 0
cityscapes_c_rounds = 3
# stream order: (domain name, corruption)
cityscapes_c_domains = [('fog', 'fog'), ('night', 'dark'), ('rain', 'rain'),
                        ('snow', 'snow')]

# The dataset (CityscapesCDataset) puts WeatherCorruption right after
# LoadImageFromFile in whichever pipeline it gets: the corruption comes before any
# resize, identically in the single-view and the multi-view pipeline. Pipelines
# (half_size_14views.py): 2048x1024 -> 1024x512, labels and scoring at full
# resolution, 14 teacher views with the plain one at `ctta_plain_view_index` (4).
_base_ = './half_size_14views.py'

ctta_stream = dict(
    rounds=cityscapes_c_rounds,
    domains=[
        dict(name=name, dataset=dict(corruption=corruption))
        for name, corruption in cityscapes_c_domains
    ],
    dataloader=dict(
        batch_size=1,
        # Corrupting a 2048x1024 frame takes 0.3-1.5 s of CPU (snow and rain the
        # most), on every pass: more workers keep a GPU fed.
        num_workers=4,
        persistent_workers=False,
        dataset=dict(
            type='CityscapesCDataset',
            data_root=cityscapes_c_data_root,
            data_prefix=dict(
                img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            severity=cityscapes_c_severity,
            seed=cityscapes_c_seed,
            pipeline={{_base_.ctta_test_pipeline}})),
    tta_pipeline={{_base_.ctta_tta_pipeline}},
    plain_view_index={{_base_.ctta_plain_view_index}})
ctta_cfg = dict(save_interval=50, progress_interval=30.0)
