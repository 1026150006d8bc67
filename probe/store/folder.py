"""A writer's hold on a store's folder: the exclusive writer lock, and one line for each I/O failure.

::

    lock = lock_store(Path("reports/study/results.h5"), timeout=600.0)   # probe.locks.FileLock, held
    ...
    lock.release()

The lock is ``<path>.lock`` (:class:`probe.locks.FileLock`; ``docs/store.md``, "Writing"). Taking it also
removes a dead writer's temporaries (only the lock holder makes them).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from probe.errors import StoreError, one_line
from probe.locks import FileLock
from probe.store.segments import remove_stale_temporaries


def lock_path(path: Path) -> Path:
    """The writer lock file of the store ``path``: ``<path>.lock``."""
    return path.with_name(path.name + ".lock")


def lock_store(path: Path, timeout: float) -> FileLock:
    """Make the store's folder, check it is writable and take the writer lock, waiting up to ``timeout``
    seconds. Raises :class:`StoreError` (one line naming the store, the folder or the lock file)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(io_message(path, exc, "creating its folder", "nothing was written")) from None
    if not os.access(folder, os.W_OK):
        raise StoreError(f"results store {path}: the folder {folder} is read-only: reading works, "
                         "writing needs a writable folder (choose another --out)")
    lock = FileLock(lock_path(path), timeout=timeout, what=f"results store {path}").acquire()
    remove_stale_temporaries(path)  # only the lock holder makes temporaries: these are a dead writer's
    return lock


def io_message(path: Path, exc: OSError, doing: str, kept: str) -> str:
    """One line for an ``OSError`` while ``doing`` something to the store ``path`` (disk full, read-only
    folder, other), ending with what is ``kept``."""
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        what = "the disk is full"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"the folder {path.parent} is read-only"
    else:
        what = f"{exc.strerror or exc}"
    return one_line(f"results store {path}: {what} ({os.strerror(exc.errno) if exc.errno else exc}) while "
                    f"{doing}; {kept}")


__all__ = ["io_message", "lock_path", "lock_store"]
