"""Keep freed CPU memory for reuse: the host-side counterpart of CUDA's caching
allocator, for CTTA on CPU.

PyTorch's CPU allocator is glibc's ``malloc``. glibc serves every block above its
mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, so every such tensor's pages are faulted in
and zeroed by the kernel again on first touch. A CTTA step allocates many large
tensors (a 14-view teacher's label-size maps: 19 x 1080 x 1920 floats = 150 MiB
each; attention maps of the 2x views), and on CPU the page faults cost as much as
the arithmetic: measured on one thread, an upsampling to 19 x 512 x 1024 takes
65 ms with fresh pages and 20 ms with reused ones, a 32768 x 512 attention
``bmm`` 101 vs 41 ms. :func:`keep_freed_memory` makes glibc serve every block from
its heap and keep the freed memory there, so a step's large tensors reuse the
previous step's pages. The process then holds its peak memory (the heap's
high-water mark) instead of returning it between steps, as a CUDA process holds
its cached blocks; the numbers are the same either way (only where memory comes
from changes).

Other C libraries (macOS, musl) are left alone: :func:`keep_freed_memory` returns
False there.
"""
import ctypes
import ctypes.util
import platform
from typing import Optional

from .options import check_choice

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Free memory at the top of the heap beyond this is returned to the system
#: (the largest value ``mallopt``'s C ``int`` takes: 2 GiB).
KEEP_TRIM_THRESHOLD = 2**31 - 1

CPU_MALLOC_MODES = ('keep', 'default')

_libc: Optional[ctypes.CDLL] = None


def _glibc() -> Optional[ctypes.CDLL]:
    """glibc's handle, or None under another C library."""
    global _libc
    if _libc is None and platform.libc_ver()[0] == 'glibc':
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    return _libc


def _mallopt(param: int, value: int) -> None:
    if _glibc().mallopt(param, value) != 1:
        raise OSError(f'mallopt({param}, {value}) failed')


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed memory there.

    Sets glibc's ``M_MMAP_MAX`` to 0 (no block gets its own ``mmap``) and its trim
    threshold to 2 GiB (freed memory stays in the heap). Affects the whole
    process and the processes it forks later (e.g. dataloader workers).

    Returns:
        bool: True if applied; False if the C library is not glibc.
    """
    if _glibc() is None:
        return False
    _mallopt(M_MMAP_MAX, 0)
    _mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    return True


def set_cpu_malloc(mode: str) -> bool:
    """Apply a CPU-allocator mode: ``'keep'`` (:func:`keep_freed_memory`) or
    ``'default'`` (leave the allocator as it is).

    Returns:
        bool: Whether :func:`keep_freed_memory` was applied.

    Raises:
        ValueError: Unknown ``mode``.
    """
    check_choice('CTTA', 'cpu_malloc', mode, CPU_MALLOC_MODES)
    return keep_freed_memory() if mode == 'keep' else False
