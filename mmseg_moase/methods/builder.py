"""Build a CTTA method from its config and the stream it runs on.

One function for the CTTA loop and every tool that builds a method outside it
(``tools/benchmark_ctta.py``), so both run the method on the same views: a tool
that built the method alone once gave CoTTA the 1920x1080 view of the ACDC
pipeline as its "plain" view instead of the declared 960x540 one (4x the
pixels in the student's step, +38% seconds per image).
"""
import copy
import inspect
from typing import Any, Dict, Mapping, Optional, Sequence

from mmengine.config import Config

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


def method_defaults(method_type: Any) -> Dict[str, Any]:
    """The constructor defaults of a registered method (by name or class),
    over its class hierarchy: the values a ``ctta_method`` config leaves to
    the method. Empty for an unknown type."""
    cls = METHODS.get(method_type) if isinstance(method_type, str) \
        else method_type
    defaults: Dict[str, Any] = {}
    for klass in reversed(getattr(cls, '__mro__', ())):
        if '__init__' in vars(klass):
            defaults.update(
                {n: p.default for n, p in
                 inspect.signature(klass.__init__).parameters.items()
                 if p.default is not inspect.Parameter.empty})
    return defaults


def resolve_method_cfg(method_cfg: Mapping) -> Dict[str, Any]:
    """The ``ctta_method`` config with the method's default optimiser filled
    in: a class that declares a ``default_optim_wrapper`` (CoTTA, TENT) owns
    it, and a config's ``optim_wrapper`` (e.g. only ``optimizer.lr``) is
    merged over it as mmengine merges a config over its base (``_delete_``
    included; an ``optimizer`` of another ``type`` replaces the default's
    whole). Other configs (an unknown type too) come back as they are.
    Resolving a resolved config gives it back unchanged.

    The loop fingerprints and labels the resolved config, so a run is the
    same whether its config repeats the default or leaves it to the class.

    Args:
        method_cfg (Mapping): The ``ctta_method`` config.

    Returns:
        dict: A copy, ``optim_wrapper`` resolved.
    """
    cfg = copy.deepcopy(dict(method_cfg))
    mtype = cfg.get('type')
    cls = METHODS.get(mtype) if isinstance(mtype, str) else mtype
    default = getattr(cls, 'default_optim_wrapper', None)
    if not isinstance(default, Mapping):
        return cfg
    given = cfg.get('optim_wrapper')
    resolved = dict(optim_wrapper=copy.deepcopy(dict(default)))
    if given is not None:  # one level up, so that its own _delete_ counts
        given = _plain_dicts(given)
        optimizer = given.get('optimizer')
        if isinstance(optimizer, dict) and 'type' in optimizer and \
                optimizer['type'] != default.get('optimizer', {}).get('type'):
            # Another optimiser takes none of the default's settings (SGD
            # has no betas); resolving a resolved config then changes
            # nothing, as when the loop resolves what prepare_ctta_config did.
            given = dict(given, optimizer=dict(optimizer, _delete_=True))
        resolved = Config._merge_a_into_b(dict(optim_wrapper=given), resolved)
    cfg['optim_wrapper'] = _plain_dicts(resolved['optim_wrapper'])
    return cfg


def _plain_dicts(x: Any) -> Any:
    """``x`` with every (Config)dict a plain dict."""
    if isinstance(x, Mapping):
        return {k: _plain_dicts(v) for k, v in x.items()}
    return x


def build_ctta_method(method_cfg: dict, plain_view_index: Optional[int] = None,
                      test_pipeline: Sequence = (),
                      telemetry: bool = False) -> BaseCTTAMethod:
    """``METHODS.build(method_cfg)`` with the stream's plain view and the run's
    telemetry switch (what the loop hands the method; it never sets them on
    a built method).

    Without a declared plain view a multi-view method finds the view of scale
    factor 1, unflipped, which is the plain view only if the single-view
    ``test_pipeline`` does not resize the image: such a stream is refused.

    Args:
        method_cfg (dict): The ``ctta_method`` config (``type`` and options).
        plain_view_index (int, optional): The stream's ``plain_view_index``.
        test_pipeline (Sequence): The stream's single-view test pipeline
            (checked when no plain view is declared).
        telemetry (bool): Whether the run records telemetry (the method's
            ``telemetry`` option). Defaults to False.

    Returns:
        BaseCTTAMethod: The built method.
    """
    cfg = resolve_method_cfg(method_cfg)
    mtype = cfg.get('type')
    if isinstance(mtype, str) and mtype not in METHODS.module_dict or \
            mtype is None:
        raise ValueError(
            f'unknown CTTA method {mtype!r} in `ctta_method.type`; '
            f'registered: {sorted(METHODS.module_dict)}.')
    index = check_plain_view(cfg, plain_view_index)
    if index is not None:
        cfg['view_index'] = index
    cfg.setdefault('telemetry', bool(telemetry))
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
