"""Process memory readings for the benchmarks (Linux ``/proc``)."""


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. ``'VmRSS'`` or ``'VmHWM'`` (peak).

    Raises:
        KeyError: The field is not in the file (not Linux, or a misspelt name).
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(f'{field} is not in /proc/self/status')


def reset_peak_rss() -> None:
    """Reset the peak resident set size (``VmHWM``) to the current RSS."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
