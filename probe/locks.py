"""Inter-process exclusive locks that also work on shared file systems without ``flock``.

::

    from probe.locks import FileLock
    with FileLock("reports/study/results.h5.lock", timeout=600, what="results store reports/study/results.h5"):
        ...  # only one process (on any host sharing the folder) gets here at a time

Two mechanisms, chosen per lock file:

* ``flock`` (the default): an exclusive ``fcntl.flock`` of the lock file. The kernel releases it when the holder
  dies, however it dies.
* an exclusive-create lock file ``<lock>.held`` holding ``host pid start-time`` (created with ``os.link`` of a
  fully written temporary, else ``O_CREAT | O_EXCL``; both are atomic on NFSv3+, Lustre, GPFS and SMB). Used
  when ``flock`` fails with ENOLCK / ENOSYS / EOPNOTSUPP (NFS without lockd, some Lustre, GPFS and SMB mounts),
  or always with ``PROBE_LOCK=file``. A lock left by a killed writer on this host (its pid is gone, a zombie, or
  a different process with a reused pid) is stale and taken over; one held from another host cannot be checked
  from here, so the timeout message names the lock file, the holder and the way out (delete the file once that
  writer is surely gone).

``PROBE_LOCK=flock`` never falls back (a failing ``flock`` is then one :class:`~probe.errors.StoreError` line).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, StoreError, one_line

#: ``flock`` errors that mean "this file system has no working flock", not "somebody holds the lock".
UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
               errno.EINVAL}
#: Seconds after which a half-created exclusive lock (empty file) or a stale-lock breaker counts as abandoned.
ABANDONED_S = 30.0
MODES = ("auto", "flock", "file")


def lock_mode() -> str:
    """``PROBE_LOCK`` (``auto`` | ``flock`` | ``file``); ConfigError naming the variable otherwise."""
    mode = os.environ.get("PROBE_LOCK", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ConfigError(f"PROBE_LOCK={mode!r} is unknown; allowed: {', '.join(MODES)}")
    return mode


def _start_time(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot (``/proc``; '' where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[-1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _pid_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return ""


def holder_text() -> str:
    """``host pid start-time`` of this process, as written into lock files."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {_start_time(pid)}".strip()


def parse_holder(text: str) -> dict[str, Any]:
    parts = text.split()
    out: dict[str, Any] = {"host": parts[0] if parts else "", "pid": None, "start": ""}
    if len(parts) > 1 and parts[1].isdigit():
        out["pid"] = int(parts[1])
    if len(parts) > 2:
        out["start"] = parts[2]
    return out


def holder_alive(text: str) -> bool | None:
    """Whether the process named by a lock file's ``host pid start`` text still runs.

    True/False for a process of this host; None when it cannot be told (another host, unparsable text)."""
    info = parse_holder(text)
    if info["host"] != socket.gethostname() or info["pid"] is None:
        return None
    pid = info["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False
    if _pid_state(pid) == "Z":
        return False
    start = _start_time(pid)
    return not (info["start"] and start and start != info["start"])  # a reused pid is another process


class FileLock:
    """An exclusive inter-process lock on ``path`` (see the module doc); a context manager.

    ``timeout``: seconds to wait for another holder (0: try once) before :class:`StoreError`; ``what``: the
    thing protected, for messages. ``mode``: ``auto`` (flock, falling back to an exclusive-create lock file
    where flock is unsupported), ``flock`` or ``file``; default from ``PROBE_LOCK``. Not re-entrant.
    """

    poll_s = 0.02

    def __init__(self, path: str | Path, timeout: float = 600.0, what: str | None = None,
                 mode: str | None = None):
        self.path = Path(path)
        self.held_path = self.path.with_name(self.path.name + ".held")
        self.timeout = float(timeout)
        self.what = what or str(self.path)
        self.mode = mode or lock_mode()
        if self.mode not in MODES:
            raise ConfigError(f"lock mode {self.mode!r} is unknown; allowed: {', '.join(MODES)}")
        self._fd: int | None = None
        self._held_text: str | None = None
        self.used: str | None = None  # "flock" or "file" once acquired

    # ------------------------------------------------------------------------------------------- public
    def acquire(self) -> FileLock:
        deadline = time.monotonic() + self.timeout
        if self.mode != "file":
            fd = self._open()
            try:
                if self._flock(fd, deadline):
                    self._fd, self.used = fd, "flock"
                    try:
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, holder_text().encode("utf-8", "replace"), 0)
                    except OSError:
                        pass  # the holder text is informative only
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # flock unsupported here: fall back
        self._acquire_file(deadline)
        self.used = "file"
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # releases the flock
        if self._held_text is not None:
            text, self._held_text = self._held_text, None
            try:
                if self._read(self.held_path) == text:
                    self.held_path.unlink()
            except OSError:
                pass

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ flock
    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(one_line(f"cannot create lock file {self.path} for {self.what}: {exc}")) from None

    def _flock(self, fd: int, deadline: float) -> bool:
        """True once locked; False when this file system has no working flock (and fallback is allowed)."""
        import fcntl

        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in UNSUPPORTED and self.mode == "auto":
                    return False
                raise StoreError(one_line(
                    f"cannot lock {self.path} for {self.what}: {exc}; on a file system without flock "
                    "(NFS without lockd, some Lustre/GPFS/SMB mounts) set PROBE_LOCK=file or auto")) from None
            if time.monotonic() >= deadline:
                try:
                    holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
                except OSError:
                    holder = ""
                raise StoreError(self._busy_message(holder))
            time.sleep(self.poll_s)

    # ------------------------------------------------------------------------------- exclusive create
    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_bytes().decode("utf-8", "replace").strip()
        except FileNotFoundError:
            return None

    def _create(self, text: str) -> bool:
        """Atomically create ``held_path`` holding ``text``; False if it exists."""
        tmp = self.held_path.with_name(f".{self.held_path.name}.{os.getpid()}.{time.monotonic_ns()}.part")
        try:
            tmp.write_text(text, encoding="utf-8")
            try:
                os.link(tmp, self.held_path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV,
                                     getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                    raise
            try:  # file systems without hard links (some SMB mounts)
                fd = os.open(self.held_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _acquire_file(self, deadline: float) -> None:
        text = holder_text()
        try:
            self.held_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(one_line(f"cannot create lock file {self.held_path} for {self.what}: {exc}")) from None
        while True:
            try:
                if self._create(text):
                    self._held_text = text
                    return
            except OSError as exc:
                raise StoreError(one_line(f"cannot create lock file {self.held_path} for {self.what}: {exc}")
                                 ) from None
            current = self._read(self.held_path)
            if current is not None and self._stale(current):
                self._break(current)
                continue
            if time.monotonic() >= deadline:
                raise StoreError(self._busy_message(current or "", self.held_path))
            time.sleep(self.poll_s)

    def _stale(self, current: str) -> bool:
        if not current:  # a writer between create and write, or one killed right there
            try:
                return time.time() - self.held_path.stat().st_mtime > ABANDONED_S
            except OSError:
                return False
        return holder_alive(current) is False

    def _break(self, stale_text: str) -> None:
        """Remove a stale lock, unless someone replaced it meanwhile (serialised by a breaker file)."""
        breaker = self.held_path.with_name(self.held_path.name + ".break")
        try:
            fd = os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                if time.time() - breaker.stat().st_mtime > ABANDONED_S:
                    breaker.unlink()
            except OSError:
                pass
            time.sleep(self.poll_s)
            return
        os.close(fd)
        try:
            if self._read(self.held_path) == stale_text:
                self.held_path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def _busy_message(self, holder: str, path: Path | None = None) -> str:
        path = path or self.path
        info = parse_holder(holder)
        who = f"pid {info['pid']} on {info['host']}" if info["pid"] is not None else "another process"
        way_out = (f"; if that process is gone (e.g. killed on another host), delete {path}"
                   if path == self.held_path else "")
        return one_line(f"{self.what} is locked by {who}: gave up after {self.timeout:g} s waiting for the "
                        f"lock file {path}{way_out}")
