"""One CTTA run per work dir: an advisory lock held for the run's lifetime.

Two runs writing ``ctta_state.pth`` and ``ctta_results.*`` into one work dir in
turn (a requeued cluster job beside the original, a pasted command) would mix
two runs in one table. :func:`hold_work_dir` takes ``<work_dir>/ctta.lock``
before the stream and refuses a second run while the first lives, naming the
holder's pid and host.

The lock is a POSIX record lock (``fcntl.lockf``, i.e. ``fcntl(F_SETLK)``),
not ``flock``: record locks are the ones NFS implements across clients (NLM
for NFSv3, built into NFSv4), and Linux emulates ``flock`` with them on NFS
anyway (flock(2), "NFS details"); Lustre and GPFS honour them when mounted
with locking (Lustre: ``-o flock``). On a mount without locking (NFS
``nolock`` / ``local_lock=all``) it only excludes runs on the same host. The
kernel (or the NFS server) drops the lock when its process dies, so a killed
run leaves no lock behind, only its record (pid, host, start), which the next
run takes over with a message. Record locks belong to the process: they are
not inherited by DataLoader workers and are not shared with another lock of
the same process (closing any descriptor of the file would drop them, so
nothing else opens it).

On several processes only rank 0 takes the lock (one per job: the ranks of
one torchrun job share the work dir) and a refusal stops every rank.
"""
import contextlib
import datetime
import errno
import json
import os
import os.path as osp
import socket
import sys
from typing import Any, Dict, Iterator, Optional

from mmengine.dist import is_main_process
from mmengine.logging import print_log

from ...utils.dist import raise_rank_errors, rank_errors

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the run says so)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = 'ctta.lock'
#: lockf's answers when another process holds the lock.
_HELD = (errno.EACCES, errno.EAGAIN)
#: ... and when the file system takes no locks.
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class WorkDirLocked(RuntimeError):
    """Another live run holds the work dir's lock."""


def _record() -> Dict[str, Any]:
    return dict(pid=os.getpid(), host=socket.gethostname(),
                started=datetime.datetime.now().isoformat(timespec='seconds'),
                command=' '.join(sys.argv))


def _read_record(fd: int) -> Optional[Dict[str, Any]]:
    """The holder's record in the lock file; None if empty or unreadable."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode('utf-8', 'replace').strip()
        record = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: Optional[Dict[str, Any]]) -> str:
    if not record:
        return 'pid unknown (its record is not written yet)'
    return (f"pid {record.get('pid')} on host {record.get('host')}, started "
            f"{record.get('started')} ({record.get('command')})")


def _gone(record: Dict[str, Any]) -> bool:
    """Whether the recorded process is known to have ended (same host only)."""
    if record.get('host') != socket.gethostname():
        return False
    try:
        os.kill(int(record['pid']), 0)
    except ProcessLookupError:
        return True
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return False


class WorkDirLock:
    """The advisory lock of one work dir (see the module docstring).

    Args:
        work_dir (str): The run's work dir (must exist).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Take the lock, or raise.

        A record left by a run that ended without releasing the lock (kill
        -9, a crashed node) is taken over with a warning naming it.

        Raises:
            WorkDirLocked: another live process holds it; the message names
                its pid, host and command, the work dir and what to do.
        """
        if fcntl is None:
            print_log(f'no file locks on this platform: {self.work_dir} is not '
                      'protected against a second run.', logger='current',
                      level=30)
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_record(fd)
            os.close(fd)
            if e.errno in _HELD:
                raise WorkDirLocked(
                    f'work dir {self.work_dir} is in use by another CTTA run: '
                    f'{_describe(holder)} holds {self.path}. Two runs in one '
                    'work dir would overwrite each other\'s ctta_state.pth and '
                    'ctta_results.*: wait for that run to end (or stop it), or '
                    'pass another --work-dir.') from None
            if e.errno in _UNSUPPORTED:
                print_log(f'{self.path}: the file system takes no locks '
                          f'({os.strerror(e.errno)}); {self.work_dir} is not '
                          'protected against a second run.', logger='current',
                          level=30)
                return
            raise
        previous = _read_record(fd)
        if previous:
            gone = ', which is no longer running' if _gone(previous) else ''
            print_log(f'{self.path}: taking over the lock left by '
                      f'{_describe(previous)}{gone}: that run ended without '
                      'releasing it (killed or crashed).', logger='current',
                      level=30)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_record()) + '\n').encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Clear the record (a clean end) and let the lock go."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # drops the lock


@contextlib.contextmanager
def hold_work_dir(work_dir: str) -> Iterator[None]:
    """Hold ``work_dir``'s lock (rank 0 of a distributed run) for the block.

    Every rank must enter it: a refusal (or any error taking the lock) is
    raised on all of them (:func:`~mmseg_moase.utils.dist.rank_errors`), so
    none waits in a collective for a rank that stopped.

    Raises:
        WorkDirLocked: on rank 0 (the other ranks: a RuntimeError quoting it).
    """
    lock = WorkDirLock(work_dir)
    error: Optional[BaseException] = None
    if is_main_process():
        try:
            lock.acquire()
        except Exception as e:  # noqa: BLE001  (re-raised on every rank)
            error = e
    failures = rank_errors(error)
    if failures:
        raise_rank_errors(error, failures, 'before the stream')
    try:
        yield
    finally:
        lock.release()
