"""Atomic file writes: write to a temporary sibling, fsync, then rename over the target."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    A crash (or kill -9) before the rename leaves the old file untouched and only a ``.tmp`` file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def require_utf8(path: str | Path, what: str = "path") -> Path:
    """``path`` as a Path, or one :class:`~probe.errors.ConfigError` line if its name is not valid UTF-8.

    Used up front for paths whose names end up in results (run directories become model ids in the
    store, HDF5 and safetensors need UTF-8 names); undecodable bytes are shown as ``\\xNN``."""
    from probe.errors import ConfigError

    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ConfigError(f"{what} {shown} has a name that is not valid UTF-8; rename it (e.g. "
                          f"`convmv -f latin1 -t utf8`) or choose another") from None
    return path


def require_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Make sure ``folder`` exists and a file can be created in it, else one :class:`~probe.errors.ConfigError`
    line naming it (a read-only mount, a folder without write permission, a full disk).

    Called by commands before they start work that writes (``train``, ``grid run``, ``report``), so a read-only
    place fails at once in one line instead of in an ``OSError`` traceback later. Root ignores permission bits,
    so the check creates (and removes) a real temporary file rather than asking ``os.access``."""
    from probe.errors import ConfigError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = "read-only" if exc.errno in (30, 13, 1) else "not writable"
        raise ConfigError(f"{what} {folder} is {reason} ({exc.strerror or exc}); choose another folder "
                          "(reading what is there still works)") from None
    return folder
