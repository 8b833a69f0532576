# CTTA on your own mmseg SegFormer config (any MiT size, your own pipelines):
# the whole CTTA config is your config + a stream + a method (+ the adapter
# backbone for MoASE). Here MoASE on Cityscapes -> ACDC (3 rounds) with mmseg's
# MiT-B2 Cityscapes config standing for yours; put your config's path (absolute,
# or relative to this file) in the first line of `_base_`, and run
#   python tools/test_ctta.py configs/mmseg_checkpoints/example_user_config.py \
#       work_dirs/my_segformer/iter_160000.pth \
#       --cfg-options ctta_stream.dataloader.dataset.data_root=/data/acdc
# * The checkpoint is what mmseg's tools/train.py wrote for your config (head
#   SegformerHead); an NVlabs file is refused with a message.
# * Used from your config: the model, its test_cfg (mmseg's Cityscapes configs:
#   slide inference, crop 1024, stride 768) and data_preprocessor. Not used: its
#   datasets, pipelines and schedule; the stream brings the test data and the
#   protocol's pipelines, the method its optimiser.
# * Source / NormStat / TENT / CoTTA: use that method base, drop the two MoASE
#   lines. (The stream declares the teachers' plain view: nothing to set here.)
# * Other streams (configs/_base_/streams/): cityscapes-to-acdc_10rounds.py,
#   cityscapes-to-cityscapes-c.py.
# * mmengine refuses a top-level key set in two bases: if your config sets
#   `custom_imports` or `custom_hooks`, move them into this file (with
#   'mmseg_moase' in the imports, and the method's EMATeacherHook in the hooks).
_base_ = [
    'mmseg::segformer/segformer_mit-b2_8xb1-160k_cityscapes-1024x1024.py',
    '../_base_/streams/cityscapes-to-acdc_3rounds.py',
    '../_base_/methods/moase.py',
    '../_base_/models/moase_adapter.py',  # MoASE only
]
custom_imports = dict(imports=['mmseg_moase'], allow_failed_imports=False)
model = dict(backbone={{_base_.moase_backbone}})  # MoASE only: MiT + adapters
