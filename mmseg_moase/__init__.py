"""mmseg-moase: continual test-time adaptation with MoASE for mmsegmentation 1.x.

Importing the package (or naming it in a config's ``custom_imports``) registers its
models, losses, CTTA methods, loop, hook, metric and sampler into mmsegmentation's
registries and lets ``torch.load(weights_only=True)`` read mmengine checkpoints.
"""
from .utils.safe_load import register_checkpoint_safe_globals

register_checkpoint_safe_globals()

from . import apis, datasets, engine, evaluation, methods, models  # noqa: E402,F401,E501
from .registry import METHODS  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ['METHODS', '__version__']
