"""Cityscapes-C: Cityscapes images under an ImageNet-C-style corruption."""
from typing import Optional, Sequence

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from .transforms.corruptions import WeatherCorruption, insert_after_loading


@DATASETS.register_module()
class CityscapesCDataset(CityscapesDataset):
    """mmseg's :class:`CityscapesDataset` with a corruption in its pipeline.

    The dataset puts a :class:`~mmseg_moase.datasets.transforms.WeatherCorruption`
    right after the pipeline's ``LoadImageFromFile``, whatever pipeline it is
    given. A CTTA stream gives each domain's dataset either the stream's test
    pipeline or, for the multi-view methods, its ``tta_pipeline`` (which
    replaces the domain's pipeline): declaring the corruption on the dataset
    makes it apply in both, before any resize, with the same per-image pixels.

    Args:
        corruption (str, optional): The corruption (see
            :data:`~mmseg_moase.datasets.transforms.CORRUPTIONS`); None = the clean
            images. Defaults to None.
        severity (int): 1..5. Defaults to 5.
        seed (int): Seed of the per-image corruption. Defaults to 0.
        pipeline (Sequence[dict]): The pipeline; must load the image with a
            top-level ``LoadImageFromFile`` when ``corruption`` is set.
        **kwargs: Any other argument of :class:`mmseg.datasets.CityscapesDataset`
            (``data_root``, ``data_prefix``, ...).
    """

    def __init__(self, corruption: Optional[str] = None, severity: int = 5,
                 seed: int = 0, pipeline: Sequence[dict] = (), **kwargs) -> None:
        self.corruption = corruption
        if corruption is not None:
            t = WeatherCorruption(corruption, severity, seed)  # checks the options
            pipeline = insert_after_loading(
                pipeline, dict(type='WeatherCorruption', corruption=t.corruption,
                               severity=t.severity, seed=t.seed))
        self.severity = severity
        self.seed = seed
        super().__init__(pipeline=list(pipeline), **kwargs)
