"""Whether a CTTA table can be trusted, and collapses reported as what they are.

Two kinds of collapse are told apart from skipped updates that leave the
model as it was:

* a *non-finite collapse*: from some step to the end of the stream every loss
  (or gradient) was non-finite, so every update since was skipped. The model
  did not "stay as it was": the last update that went through (if any) left
  it in that state, and the table scores the broken model;
* an *mIoU collapse*: a pass scored far below the stream's first pass
  (``collapse_miou_ratio`` of it). That is the method's result, reported, not
  a fault of the run.

The table is *untrusted* when more than ``max_skipped_share`` of the updates
were skipped; ``tools/test_ctta.py`` then exits with :data:`EXIT_UNTRUSTED`
(``--allow-untrusted``: 0).
"""
from typing import Any, Dict, List, Optional, Sequence

#: Exit status of ``tools/test_ctta.py`` when the table is not trustworthy.
EXIT_UNTRUSTED = 3
#: Defaults of the loop options ``max_skipped_share`` / ``collapse_miou_ratio``.
MAX_SKIPPED_SHARE = 0.05
COLLAPSE_MIOU_RATIO = 0.25


def _where(w: Optional[Dict[str, Any]]) -> str:
    if not w:
        return '?'
    image = f" image {w['image']}" if w.get('image') is not None else ''
    return f"round {w['round']} {w['domain']}{image}"


def miou_collapse(records: Sequence[Dict[str, Any]],
                  ratio: float) -> Optional[Dict[str, Any]]:
    """The first pass whose mIoU is below ``ratio`` x the first pass's."""
    if len(records) < 2 or not ratio:
        return None
    ref = records[0]['mIoU']
    if ref is None or not ref > 0:
        return None
    for r in records[1:]:
        if r['mIoU'] is not None and r['mIoU'] < ratio * ref:
            return dict(began=dict(round=r['round'] + 1, domain=r['domain']),
                        mIoU=r['mIoU'], ratio=ratio,
                        first_pass=dict(round=records[0]['round'] + 1,
                                        domain=records[0]['domain'], mIoU=ref))
    return None


def run_verdict(records: Sequence[Dict[str, Any]], steps: int, skipped: int,
                first_skip: Optional[Dict[str, Any]],
                streak: Optional[Dict[str, Any]],
                last_applied: Optional[Dict[str, Any]],
                max_skipped_share: float,
                collapse_miou_ratio: float) -> Dict[str, Any]:
    """The verdict on a run's table, as written to ``ctta_results.json``.

    Args:
        records (Sequence[dict]): The pass records so far.
        steps (int): Method steps so far.
        skipped (int): Updates skipped so far.
        first_skip (dict, optional): Where the first skipped update was.
        streak (dict, optional): The run of skipped updates the stream is in
            now: ``began`` (round, domain, image), ``steps``; None when the
            last step's update went through.
        last_applied (dict, optional): Where the last step whose update was
            not skipped was.
        max_skipped_share (float): Above this share of skipped updates the
            table is untrusted.
        collapse_miou_ratio (float): See :func:`miou_collapse`.

    Returns:
        dict: ``trusted``, ``skipped_updates_share``, ``max_skipped_share``,
        ``collapse`` (the non-finite collapse or None), ``miou_collapse`` and
        ``warnings`` (the messages, also in the log and ``ctta_results.md``).
    """
    share = skipped / steps if steps else 0.0
    collapse = None
    if streak:
        collapse = dict(kind='non-finite loss', began=streak['began'],
                        skipped_updates=streak['steps'],
                        last_applied_update=last_applied)
    out = dict(trusted=share <= max_skipped_share,
               skipped_updates_share=share,
               max_skipped_share=max_skipped_share, collapse=collapse,
               miou_collapse=miou_collapse(records, collapse_miou_ratio))
    out['warnings'] = verdict_warnings(out, steps, skipped, first_skip)
    return out


def verdict_warnings(v: Dict[str, Any], steps: int, skipped: int,
                     first_skip: Optional[Dict[str, Any]]) -> List[str]:
    """The messages of a verdict (see :func:`run_verdict`)."""
    out = []
    pct = f'{100 * v["skipped_updates_share"]:.0f}%'
    collapse = v['collapse']
    if collapse:
        began, last = collapse['began'], collapse['last_applied_update']
        text = (f'WARNING: the model collapsed: from {_where(began)} on, the '
                'loss or a gradient was non-finite at every step, so every '
                f'update from then on was skipped ({collapse["skipped_updates"]}'
                f' in a row; {skipped} of {steps} updates in all, {pct}). ')
        if last:
            text += (f'The last update that went through ({_where(last)}) '
                     'left a model whose loss is non-finite: every '
                     'prediction since comes from that broken model, not '
                     'from an unchanged one. The step was too large for the '
                     'model (the learning rate, or a loss term that exploded).')
        else:
            text += ('No update ever went through: the source model gives a '
                     'non-finite loss on this stream (its weights, the input '
                     'normalisation or the loss), and the table scores it '
                     'unadapted.')
        out.append(text)
    elif skipped:
        out.append(f'WARNING: {skipped} of {steps} updates ({pct}) were '
                   'skipped (non-finite loss or gradient), the first at '
                   f'{_where(first_skip)}; at those steps the weights were '
                   'left unchanged, and the updates after them went through.')
    m = v['miou_collapse']
    if m:
        first = m['first_pass']
        out.append(f"WARNING: mIoU collapse: {_where(m['began'])} scored "
                   f"{m['mIoU']:.2f} mIoU, below {100 * m['ratio']:.0f}% of "
                   f"the first pass's {first['mIoU']:.2f} ({_where(first)}): "
                   'from there on the adapted model predicts far worse than '
                   'at the start of the stream.')
    if not v['trusted']:
        out.append(f'The table is not trustworthy: {pct} of the updates were '
                   'skipped, more than ctta_cfg.max_skipped_share='
                   f'{v["max_skipped_share"]:g}; tools/test_ctta.py exits '
                   f'with status {EXIT_UNTRUSTED} (--allow-untrusted: 0).')
    return out
