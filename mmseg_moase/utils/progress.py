"""A one-line progress display for long CTTA passes."""
import sys
import time
from typing import Callable, Optional, TextIO

from mmengine.logging import print_log


def _hms(seconds: float) -> str:
    if seconds != seconds or seconds == float('inf'):
        return '--:--'
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f'{h:d}:{m:02d}:{s:02d}' if h else f'{m:02d}:{s:02d}'


class StreamProgress:
    """Images done / total, speed, ETA and the running mIoU of the current pass.

    Redraws one line on a terminal; elsewhere (logs, CI) prints a line every
    ``interval`` seconds and at the end of each pass.

    Args:
        total (int): Images in the whole stream (all rounds and domains).
        done (int): Images already done (when resuming).
        interval (float): Seconds between printed lines off a terminal.
        stream (TextIO, optional): Defaults to ``sys.stdout``.
        enabled (bool): Show anything at all (False on the ranks other than 0
            of a distributed run, whose lines would interleave). Default True.
    """

    def __init__(self, total: int, done: int = 0, interval: float = 10.0,
                 stream: Optional[TextIO] = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.total = total
        self.done = done
        self.interval = interval
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.start_time = time.perf_counter()
        self.start_done = done
        self.last_print = 0.0
        self.label = ''
        self.pass_done = 0
        self.pass_total = 0

    def start_pass(self, label: str, pass_total: int, pass_done: int = 0) -> None:
        self.label = label
        self.pass_total = pass_total
        self.pass_done = pass_done

    def line(self, miou: float) -> str:
        elapsed = time.perf_counter() - self.start_time
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float('nan')
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = '#' * filled + '.' * (width - filled)
        return (f'[{bar}] {self.done}/{self.total} | {self.label} '
                f'{self.pass_done}/{self.pass_total} | {rate:.2f} img/s | '
                f'ETA {_hms(eta)} | pass mIoU {miou:.2f}')

    def update(self, n: int, miou_fn: Callable[[], float],
               force: bool = False) -> None:
        self.done += n
        self.pass_done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if force or now - self.last_print > 0.5:
                self.stream.write('\r' + self.line(miou_fn()))
                self.stream.flush()
                self.last_print = now
                if force:
                    self.stream.write('\n')
        elif force or now - self.last_print > self.interval:
            print_log(self.line(miou_fn()), logger='current')
            self.last_print = now
