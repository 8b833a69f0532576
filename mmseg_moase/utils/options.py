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
