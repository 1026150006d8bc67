"""The files of a store: the base ``results.h5`` and its commit segments ``results.h5.d/<first>-<last>.h5``.

Every commit writes one new, complete, small HDF5 file — a *segment* holding only what the commit adds (and
the deletions it makes) — so a commit costs O(what it adds). Segments are numbered; a segment made by merging
others is named by the range it covers and supersedes the segments inside that range; the base records the
last segment folded into it (``covers``). Files appear atomically (:func:`write_bytes_atomic`): written to an
unnamed ``O_TMPFILE`` (nothing is left behind by a killed writer), fsynced, then linked under their name.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from probe.errors import StoreError, one_line

_NAME = re.compile(r"^(\d{12})-(\d{12})\.h5$")


@dataclass(frozen=True)
class Segment:
    first: int
    last: int
    path: Path

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


def segment_dir(store: Path) -> Path:
    return store.with_name(store.name + ".d")


def segment_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}.h5"


def list_segments(store: Path, covers: int = 0) -> list[Segment]:
    """The live segments of ``store``, oldest first: newer than the base (``covers``), not inside a merged one."""
    folder = segment_dir(store)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(one_line(f"results store {store}: cannot list {folder}: {exc}")) from None
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if last > covers and first <= last:
                found.append(Segment(first, last, folder / name))
    live = [s for s in found if not any(o is not s and o.first <= s.first and s.last <= o.last
                                        and (o.first, o.last) != (s.first, s.last) for o in found)]
    live.sort(key=lambda s: (s.first, s.last))
    for older, newer in zip(live, live[1:]):
        if newer.first <= older.last:
            raise StoreError(f"results store {store}: segments {older.path.name} and {newer.path.name} overlap; "
                             "the store folder was edited by hand")
    return live


def superseded(store: Path, covers: int) -> list[Path]:
    """Segment files made obsolete by a merge or a fold into the base (safe to delete under the lock)."""
    live = {s.path for s in list_segments(store, covers)}
    folder = segment_dir(store)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in names if _NAME.match(n) and folder / n not in live]


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename/link is still atomic
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _named_temp(folder: Path, prefix: str) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    return fd, Path(name)


def _link_tmpfile(fd: int, target: Path) -> None:
    """``linkat(fd, target)`` of an ``O_TMPFILE`` (``os.link`` only follows ``/proc/self/fd`` via ``linkat``)."""
    dfd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(f"/proc/self/fd/{fd}", target.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def write_bytes_atomic(target: Path, data: bytes | memoryview, replace: bool = False, mode: int = 0o644) -> None:
    """Make ``target`` hold ``data`` all at once: it exists complete or not at all, and nothing else stays.

    Linux ``O_TMPFILE`` + ``linkat`` where the file system has it (a killed writer leaves nothing), else a named
    ``.<name>.*.tmp`` sibling that is removed on any error (and by the next writer after a kill). ``replace``:
    ``target`` may exist and is replaced (``os.replace``). Errors propagate as ``OSError`` (ENOSPC, EROFS, …).
    """
    folder = target.parent
    prefix = f".{target.name}."
    tmp_fd, tmp_path = None, None
    try:
        try:
            tmp_fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, mode)  # type: ignore[attr-defined]
        except (AttributeError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL,
                                                               errno.ENOENT, getattr(errno, "ENOTSUP", 95)):
                raise
            tmp_fd = None
        if tmp_fd is not None:
            _write_all(tmp_fd, data)
            try:
                if not replace:
                    _link_tmpfile(tmp_fd, target)
                    return
                tmp_path = folder / f"{prefix}{os.getpid()}.{os.urandom(4).hex()}.tmp"
                _link_tmpfile(tmp_fd, tmp_path)
            except OSError as exc:  # no /proc, or linkat refused: write a named temporary instead
                if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.close(tmp_fd)
                tmp_fd, tmp_path = None, None
        if tmp_fd is None and tmp_path is None:
            tmp_fd, tmp_path = _named_temp(folder, prefix)
            os.fchmod(tmp_fd, mode)
            _write_all(tmp_fd, data)
            if not replace:
                try:
                    os.link(tmp_path, target)  # fails if target exists, like the O_TMPFILE path
                except OSError as exc:  # no hard links here (some SMB mounts): we hold the lock, rename
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK) or target.exists():
                        raise
                    os.rename(tmp_path, target)
                else:
                    tmp_path.unlink()
                tmp_path = None
                return
        os.replace(tmp_path, target)
        tmp_path = None
    finally:
        if tmp_fd is not None:
            os.close(tmp_fd)
        if tmp_path is not None:
            try:
                tmp_path.unlink()
            except OSError:
                pass
        fsync_dir(folder)


def remove_stale_temporaries(store: Path) -> None:
    """Delete ``.*.tmp`` siblings left by a killed writer (call under the writer lock only)."""
    for folder in (store.parent, segment_dir(store)):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(f".{store.name}") or (folder != store.parent and name.startswith(".")):
                if name.endswith(".tmp"):
                    try:
                        (folder / name).unlink()
                    except OSError:
                        pass
