"""Small file-system checks and writes with messages that say what to do."""
import errno
import os
import os.path as osp
import shutil
from typing import BinaryIO, Callable, Optional, Tuple

#: Free space kept beyond a file's expected size before writing it.
SPACE_MARGIN = 1 << 20


def check_writable_dir(path: str) -> None:
    """Create ``path`` if needed and make sure a file can be written in it.

    Raises:
        PermissionError: naming the folder and the ``--work-dir`` option.
    """
    try:
        os.makedirs(path, exist_ok=True)
        # One name per process: ranks of a distributed run probe at once.
        probe = osp.join(path, f'.write_test.{os.getpid()}')
        with open(probe, 'w') as f:
            f.write('ok')
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f'work dir {path} is not writable ({e}); pass '
                              '--work-dir DIR with a writable folder.') from None


class FileWriteError(OSError):
    """A file could not be written; the message names it, the cause and
    what was kept. ``errno`` is the cause's (``ENOSPC`` for a full disk)."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = code


def free_bytes(directory: str) -> Optional[int]:
    """Free bytes on ``directory``'s file system; None where it cannot tell."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f'{n / (1 << 20):.1f} MiB'


def _os_error(e: BaseException) -> Optional[OSError]:
    """The OSError ``e`` is or was raised from (torch's writer wraps it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _cause(e: BaseException, directory: str,
           size: int) -> Tuple[str, Optional[int]]:
    """What made a write fail, in words, and its errno. A writer error
    without one (torch's) on a disk with less free space than the file
    needs counts as a full disk."""
    os_error = _os_error(e)
    code = os_error.errno if os_error is not None else None
    free = free_bytes(directory)
    short = free is not None and free < size + SPACE_MARGIN
    if code == errno.ENOSPC or (code is None and short):
        where = f'{_mb(free)} free on {directory}, about {_mb(size)} needed' \
            if short else directory
        return f'no space left on the device ({where})', errno.ENOSPC
    if code == errno.EDQUOT:
        return f'the disk quota of {directory} is used up', code
    text = str(e).strip().splitlines()
    return f'{type(e).__name__}: {text[0] if text else ""}', code


def write_atomically(path: str, write: Callable[[BinaryIO], None],
                     size: int, kept: str) -> None:
    """Write ``path`` through ``path.tmp``: fsync, then rename over it, so a
    crash at any point leaves the old file or the new one, whole.

    The free space is checked first (where the file system tells it); a
    failed write (``OSError``, or the ``RuntimeError`` torch's writer turns a
    full disk into) removes the temporary file and raises one error naming
    the file, the cause and ``kept``.

    Args:
        path (str): The file.
        write (Callable): Writes the contents to the open binary file.
        size (int): The expected size in bytes (for the space check).
        kept (str): What is intact and what to do, for the message (e.g.
            "The previous state ... is intact: ...").

    Raises:
        FileWriteError: naming ``path``, the cause (``errno`` ENOSPC for a
            full disk) and ``kept``.
    """
    directory = osp.dirname(osp.abspath(path))
    tmp = path + '.tmp'
    free = free_bytes(directory)
    if free is not None and free < size + SPACE_MARGIN:
        raise FileWriteError(
            f'not writing {path}: no space left on the device ({_mb(free)} '
            f'free on {directory}, about {_mb(size)} needed). {kept}',
            errno.ENOSPC)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        cause, code = _cause(e, directory, size)
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise FileWriteError(f'could not write {path}: {cause}. {kept} (The '
                             f'partial {osp.basename(tmp)} is removed.)',
                             code) from None
    try:  # the rename itself, on file systems that support it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
