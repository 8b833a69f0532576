"""The checks of :class:`~.ctta_loop.CTTALoop`'s configuration (``test_cfg``),
each error naming the config key and the fix."""
from typing import Any, Sequence

from ...registry import METHODS
from ...utils.cpu_malloc import CPU_MALLOC_MODES
from ...utils.options import check_choice
from ...utils.precision import PRECISIONS

WHERE = 'CTTALoop (ctta_cfg)'


def check_loop_config(dataloader: Any, method: Any, domains: Sequence[Any],
                      rounds: Any, cpu_malloc: str, precision: str) -> None:
    """Raise ``TypeError``/``ValueError`` naming what is wrong with the loop's
    stream (dataloader template, domains, rounds), method or options.

    Args:
        dataloader: ``test_dataloader`` (must be a config dict).
        method: ``test_cfg.method`` (a dict with a ``type``).
        domains: ``test_cfg.domains`` (``dict(name=..., dataset=...)`` each,
            names unique).
        rounds: ``test_cfg.rounds`` (an integer >= 1).
        cpu_malloc (str): One of :data:`CPU_MALLOC_MODES`.
        precision (str): One of :data:`PRECISIONS`.
    """
    check_choice(WHERE, 'cpu_malloc', cpu_malloc, CPU_MALLOC_MODES)
    check_choice(WHERE, 'precision', precision, PRECISIONS)
    if not isinstance(dataloader, dict):
        raise TypeError('CTTALoop needs `test_dataloader` as a config dict '
                        '(the template of every domain dataloader)')
    if not isinstance(method, dict) or 'type' not in method:
        raise ValueError('`ctta_method` (test_cfg.method) must be a dict '
                         'with a `type` (one of '
                         f'{sorted(METHODS.module_dict)})')
    if not domains:
        raise ValueError('`test_cfg.domains` is empty: list the stream as '
                         "[dict(name='fog', dataset=dict(...)), ...]")
    for d in domains:
        if not isinstance(d, dict) or 'name' not in d or 'dataset' not in d:
            raise ValueError('each entry of `test_cfg.domains` needs `name` '
                             f'and `dataset`, got {d!r}')
    names = [d['name'] for d in domains]
    if len(set(names)) != len(names):
        raise ValueError(f'domain names must be unique, got {names}')
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f'`test_cfg.rounds` must be an integer >= 1, got '
                         f'{rounds!r}')
