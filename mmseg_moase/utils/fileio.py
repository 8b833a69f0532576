"""Small file-system checks with messages that say what to do."""
import os
import os.path as osp


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
