"""Listing image files under a folder in bounded time: each real directory is read once, each file listed once.

>>> from probe.data.listing import list_images
>>> list_images("~/data/DIV2K")                     # doctest: +SKIP
[PosixPath('/home/me/data/DIV2K/0001.png'), ...]

A recursive walk that follows symbolic links (as a dataset folder on a shared drive needs: ``train -> /mnt/…``)
loops on a link back up the tree (``current -> .``, ``all -> ..``): ``os.walk(followlinks=True)`` keeps no
record of where it has been, so one such link lists every image ~40 times (until the kernel's 40-link limit)
and two make the walk exponential (the Python docs warn of this under ``os.walk``). Here every directory is
identified by its ``(st_dev, st_ino)`` and entered at most once (the first time in sorted order, so the
listing is the same on every machine); a file reached twice (a link to an image listed elsewhere, a hard
link) is listed once, under the first path in that order. Hidden files and folders (``.name``) are skipped;
unreadable directories are skipped with a warning naming them. Time is linear in the size of the real tree.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_name(name: str) -> bool:
    """True for a visible file name with one of :data:`EXTENSIONS` (case-insensitive)."""
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _key(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk(root: str | Path, max_depth: int | None = None) -> list[tuple[Path, list[str], list[str]]]:
    """``[(directory, sub-directory names, image file names)]`` under ``root``, each real directory once.

    Depth-first in sorted order; ``max_depth`` = 0 reads ``root`` only, 1 its sub-folders too, …; None: all.
    Sub-directory names are those entered (a link back to a directory already read is left out).
    """
    root = Path(root).expanduser()
    seen_dirs: set[tuple[int, int]] = set()
    start = _key(root)
    if start is None:
        return []
    seen_dirs.add(start)
    out: list[tuple[Path, list[str], list[str]]] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            warnings.warn(f"skipping unreadable folder {folder}: {exc.strerror or exc}", stacklevel=2)
            continue
        subdirs, files = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                if max_depth is not None and depth >= max_depth:
                    continue
                key = _key(entry.path)
                if key is None or key in seen_dirs:
                    continue  # a loop back up the tree, or a second link to a folder already read
                seen_dirs.add(key)
                subdirs.append(entry.name)
            elif is_file and is_image_name(entry.name):
                files.append(entry.name)
        out.append((folder, subdirs, files))
        stack.extend((folder / d, depth + 1) for d in reversed(subdirs))
    return out


def list_images(root: str | Path, max_depth: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, see the module doc), sorted by path relative to ``root``."""
    root = Path(root).expanduser()
    seen_files: set[tuple[int, int]] = set()
    found = []
    for folder, _, files in walk(root, max_depth):
        for name in files:
            path = folder / name
            key = _key(path)
            if key is None or key in seen_files:
                continue
            seen_files.add(key)
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
