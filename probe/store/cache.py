"""The open files of one store, cached across the views of a writer's transaction (:class:`FileCache`).

A writer asks "is this result stored?" once per result; reopening and re-merging every file each time would
cost O(store) per query. The cache keeps each file open until it changes and remembers the merged state after
each file, so a query costs O(what changed since the last one)::

    cache = FileCache(Path("reports/study/results.h5"))
    view = cache.view()                                           # a StoreView, or None: no store yet
    found = cache.lookup("models/m0/probes/generalization/<key>", lambda tombstones: False)
    cache.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError, one_line
from probe.store.checksum import Verifier
from probe.store.schema import open_store
from probe.store.view import READ_ERRORS, StoreView, read_tombstones


class FileCache:
    """The open files of one store, kept across the views of a writer's transaction and reopened only when
    they change (a file is keyed by inode, size and mtime), so a query costs O(what changed), not O(store)."""

    def __init__(self, path: Path):
        self.path = path
        self._open: dict[Path, tuple[tuple[int, int, int], h5py.File, Verifier]] = {}
        #: the merged state after each file, oldest first: (file identity, models, entries)
        self._states: list[tuple[Any, dict[Any, Any], dict[Any, Any]]] = []

    def _build(self, files: list[tuple[tuple[int, int, int], h5py.File, Verifier]]) -> StoreView:
        """The view of ``files``, re-applying only the files after the longest unchanged prefix (a commit adds
        a segment, a merge replaces the newest ones: the base and older segments are not read again)."""
        same = 0
        for state, f in zip(self._states, files):
            if state[0] != (f[1].filename, f[0]):
                break
            same += 1
        del self._states[same:]
        view = StoreView(self.path, [], [])
        if same:
            view.models, view.entries = dict(self._states[-1][1]), dict(self._states[-1][2])
        for f in files[same:]:
            view._apply(f[1], f[2])
            self._states.append(((f[1].filename, f[0]), dict(view.models), dict(view.entries)))
        view.files = [(f[1], f[2]) for f in files]
        return view

    def _file(self, path: Path, label: str, version_from_file: bool) -> tuple[tuple[int, int, int], h5py.File,
                                                                               Verifier]:
        st = path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._open.get(path)
        if cached is not None and cached[0] == key:
            return cached
        if cached is not None:
            cached[1].close()
        handle = open_store(path)
        try:
            version = int(np.asarray(handle.attrs["schema_version"]).item())
        except BaseException:
            handle.close()
            raise
        entry = (key, handle, Verifier(label, required=version >= 2 or not version_from_file))
        self._open[path] = entry
        return entry

    def view(self) -> StoreView | None:
        """The committed store as it is now (None when there is no store yet)."""
        files = self.files()
        return None if files is None else self._build(files)

    def lookup(self, path: str, tombstone_hits: Any) -> tuple[h5py.Group, Verifier] | None:
        """The newest committed group at ``path`` without listing the store: each file, newest first, either
        holds it (every link on the way a hard link) or deletes it (``tombstone_hits(tombstones)``)."""
        files = self.files()
        if files is None:
            return None
        parts = path.split("/")
        try:
            for _key, handle, verify in reversed(files):
                node: Any = handle
                for part in parts:
                    link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
                    if link is None:
                        node = None
                        break
                    if not isinstance(link, h5py.HardLink):
                        from probe.store.safety import hard_children

                        hard_children(node, verify.store)  # raises, naming the link
                    node = node[part]
                if isinstance(node, h5py.Group):
                    return node, verify
                if tombstone_hits(read_tombstones(handle)):
                    return None
        except StoreError:
            raise
        except READ_ERRORS as exc:
            raise StoreError(one_line(f"results store {self.path}: corrupt ({type(exc).__name__}: {exc})")) from None
        return None

    def files(self) -> list[tuple[tuple[int, int, int], h5py.File, Verifier]] | None:
        """The open files of the committed store, oldest first (reopened where they changed)."""
        from probe.store.segments import list_segments

        if not self.path.exists():
            return None
        try:
            for _attempt in range(8):
                try:
                    base = self._file(self.path, str(self.path), True)
                    covers = int(np.asarray(base[1].attrs.get("covers", 0)).item())
                    files = [base] + [self._file(s.path, f"{self.path} (segment {s.path.name})", False)
                                      for s in list_segments(self.path, covers)]
                    break
                except FileNotFoundError:
                    continue
            else:
                raise StoreError(f"results store {self.path}: its segments keep changing while being read")
            current = {id(f[1]) for f in files}
            for p in [p for p, f in self._open.items() if id(f[1]) not in current]:
                self._open.pop(p)[1].close()  # a merged-away segment
            return files
        except StoreError:
            raise
        except READ_ERRORS as exc:
            raise StoreError(one_line(f"results store {self.path}: corrupt ({type(exc).__name__}: {exc})")) from None

    def close(self) -> None:
        for _key, handle, _verify in self._open.values():
            try:
                handle.close()
            except Exception:  # noqa: BLE001
                pass
        self._open.clear()
        self._states = []


__all__ = ["FileCache"]
