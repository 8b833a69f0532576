"""Parts of the NVlabs SegFormer checkpoint converter, split by concern.

:mod:`.mapping` renames and reshapes NVlabs keys, :mod:`.layout` detects what a
state dict is, :mod:`.checks` says whether it fits a config or a model. The entry
point and the public names live in :mod:`mmseg_moase.models.checkpoint_convert`.
:mod:`.loading` loads a source checkpoint (mmseg 1.x or NVlabs, converted in
memory) into a CTTA model, refusing one that does not fit.
"""
