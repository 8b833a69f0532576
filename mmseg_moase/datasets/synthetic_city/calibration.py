"""How strong each synthetic condition is: the calibrated per-condition
severities, the previous uniform one, and their checks.

The stand-in stream should hurt a source model the way ACDC hurts a Cityscapes
SegFormer: fog least, night most (published SegFormer-B5 Source keeps about
0.84 / 0.49 / 0.72 / 0.70 of its clean mIoU on fog / night / rain / snow).
Chosen with ``tools/calibrate_conditions.py`` (Source's mIoU on the stream's
64 scenes per condition over its clean val mIoU, NormStat beside it) on the
source model of ``configs/synthetic/segformer_mit-b0_synthetic-source_128x256.py``
(with ``PhotoMetricDistortion``; clean val 57.31), looking only at Source and
NormStat, never at an adapting method. Retention (NormStat - Source):

    severity   fog            night          rain           snow
    0          0.78 (+1.0)    -              -              0.71 (+0.3)
    0.05       0.77 (+1.1)    -              -              0.66 (+0.6)
    0.1        0.76 (+1.1)    -              0.73 (+4.5)    0.62 (+1.3)
    0.12-0.15  -              -              0.71 / 0.65    -
    0.2        0.74 (+1.3)    -              0.61 (+6.5)    0.55 (+2.2)
    0.3        0.72 (+1.5)    0.51 (+5.5)    0.47 (+8.6)    0.50 (+2.3)
    0.35-0.45  -              0.49 / 0.47 / 0.45 (+5.8 to +6.3)   -
    0.6        -              0.41 (+6.9)    -              -
    0.7 (legacy, source without PhotoMetricDistortion): 0.49 / 0.34 / 0.20 / 0.28

Fog cannot reach 0.80 here: its mildest rendering (visibility 600 m at
severity 0) already veils the far half of a 90-170 m street. Test statistics
still gain on every condition (tried: a camera auto-exposure that brings each
image to the clear scene's brightness, +8.4 / +9.6 on night; the source model's
BatchNorm trained on population statistics for 400 more iterations, unchanged
gains): see docs/synthetic_benchmark.md.
"""
from numbers import Real
from typing import Dict, Mapping, Optional, Union

from .constants import CONDITIONS

#: Conditions preset name -> per-condition severity.
#: ``'calibrated'`` (default since generator 2.2.0): see the module docstring.
#: ``'legacy'``: 0.7 for every condition, the data of every table before
#: generator 2.2.0 (byte-identical files).
PRESETS: Dict[str, Dict[str, float]] = {
    'calibrated': dict(fog=0.05, night=0.4, rain=0.13, snow=0.03),
    'legacy': {c: 0.7 for c in CONDITIONS},
}
DEFAULT_PRESET = 'calibrated'

Severity = Union[None, str, float, Mapping[str, float]]


def condition_severities(severity: Severity = None) -> Dict[str, float]:
    """Per-condition severities from a preset name, one number or a mapping.

    Args:
        severity: None (the default preset), a preset name of :data:`PRESETS`,
            one number in [0, 1] for every condition, or a mapping condition ->
            number (conditions it leaves out keep the default preset's value).

    Returns:
        ``{condition: severity}`` for every condition of :data:`CONDITIONS`.

    Raises:
        ValueError: An unknown preset or condition, or a value outside [0, 1]
            (naming the condition and the range).
    """
    out = dict(PRESETS[DEFAULT_PRESET])
    if severity is None:
        return out
    if isinstance(severity, str):
        if severity not in PRESETS:
            raise ValueError(f'unknown conditions preset {severity!r}; expected '
                             f'one of {sorted(PRESETS)}')
        return dict(PRESETS[severity])
    if isinstance(severity, Real) and not isinstance(severity, bool):
        given = {c: severity for c in CONDITIONS}
    elif isinstance(severity, Mapping):
        given = dict(severity)
    else:
        raise ValueError('severity must be a preset name, a number or a '
                         f'mapping condition -> number, got {severity!r}')
    for cond, value in given.items():
        if cond not in CONDITIONS:
            raise ValueError(f'unknown condition {cond!r} in severity; expected '
                             f'one of {CONDITIONS}')
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float('nan')
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"severity of '{cond}' must lie in [0, 1], got "
                             f'{given[cond]!r}')
        out[cond] = value
    return out


def severity_record(severity: Severity) -> Union[float, Dict[str, float]]:
    """What ``meta.json`` records: one number where every condition has it (as
    before generator 2.2.0, so a legacy data set keeps its meta), else the
    mapping."""
    sev = condition_severities(severity)
    values = set(sev.values())
    return values.pop() if len(values) == 1 else sev


def preset_of(severity: Severity) -> Optional[str]:
    """The preset name whose values ``severity`` has, if any."""
    sev = condition_severities(severity)
    return next((k for k, v in PRESETS.items() if v == sev), None)
