"""Build a CTTA method from its config and the stream it runs on.

One function for the CTTA loop and every tool that builds a method outside it
(``tools/benchmark_ctta.py``), so both run the method on the same views: a tool
that built the method alone once gave CoTTA the 1920x1080 view of the ACDC
pipeline as its "plain" view instead of the declared 960x540 one (4x the
pixels in the student's step, +38% seconds per image).
"""
import copy
from typing import Optional, Sequence

from ..registry import METHODS
from .base import BaseCTTAMethod


def check_plain_view(method_cfg: dict, declared: Optional[int]) -> Optional[int]:
    """The plain view index a method is built with: the stream's.

    The stream declares it once (``ctta_stream.plain_view_index``); a method's own
    ``view_index`` may only repeat it.

    Args:
        method_cfg (dict): The ``ctta_method`` config.
        declared (int, optional): The stream's ``plain_view_index``.

    Returns:
        Optional[int]: The index to build the method with (None: the method
        finds the view of scale factor 1, unflipped, per batch).
    """
    own = method_cfg.get('view_index')
    if declared is not None and own is not None and own != declared:
        raise ValueError(
            f'ctta_method.view_index={own} but the stream declares '
            f'plain_view_index={declared}: drop the method option (the '
            'stream says which view is plain).')
    return own if declared is None else declared


def build_ctta_method(method_cfg: dict, plain_view_index: Optional[int] = None,
                      test_pipeline: Sequence = ()) -> BaseCTTAMethod:
    """``METHODS.build(method_cfg)`` with the stream's plain view.

    Without a declared plain view a multi-view method finds the view of scale
    factor 1, unflipped, which is the plain view only if the single-view
    ``test_pipeline`` does not resize the image: such a stream is refused.

    Args:
        method_cfg (dict): The ``ctta_method`` config (``type`` and options).
        plain_view_index (int, optional): The stream's ``plain_view_index``.
        test_pipeline (Sequence): The stream's single-view test pipeline
            (checked when no plain view is declared).

    Returns:
        BaseCTTAMethod: The built method.
    """
    cfg = copy.deepcopy(dict(method_cfg))
    mtype = cfg.get('type')
    if isinstance(mtype, str) and mtype not in METHODS.module_dict or \
            mtype is None:
        raise ValueError(
            f'unknown CTTA method {mtype!r} in `ctta_method.type`; '
            f'registered: {sorted(METHODS.module_dict)}.')
    index = check_plain_view(cfg, plain_view_index)
    if index is not None:
        cfg['view_index'] = index
    method = METHODS.build(cfg)
    if index is None and method.multi_view and any(
            isinstance(t, dict) and t.get('type') == 'Resize'
            for t in test_pipeline or ()):
        raise ValueError(
            "the stream's test pipeline resizes the image, so the "
            "multi-view pipeline's view of scale factor 1 is not its plain "
            'view: declare the plain view of `ctta_stream.tta_pipeline` as '
            '`ctta_stream.plain_view_index` (the view equal to the test '
            "pipeline's output, unflipped).")
    return method
