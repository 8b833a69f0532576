"""Option checks with messages that name the option and the allowed values."""
from typing import Any, Sequence


def check_choice(owner: str, name: str, value: Any, allowed: Sequence) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``.

    Args:
        owner (str): Who takes the option (e.g. ``'MoASE'``), for the message.
        name (str): The option's name.
        value: The value given.
        allowed (Sequence): The accepted values.
    """
    if value not in allowed:
        raise ValueError(f'{owner} option `{name}` must be one of '
                         f'{list(allowed)}, got {value!r}')


def check_share(owner: str, name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a share in [0, 1].

    Args:
        owner (str): Who takes the option (e.g. ``'CTTALoop (ctta_cfg)'``).
        name (str): The option's name.
        value: The value given.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= 1:
        raise ValueError(f'{owner} option `{name}` must be a share in [0, 1], '
                         f'got {value!r}')
    return float(value)
