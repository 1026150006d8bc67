"""The single writer of a result store: copy-on-write commits under an exclusive lock file.

::

    from probe.store import ResultStore
    store = ResultStore("reports/derain_complexity/results.h5")
    with store.transaction():                       # one commit for many results
        store.write("resnet-n16-s0", {"family": "resnet", "n_backgrounds": 16, "seed": 0},
                    "generalization", {"splits": ["id", "ood"]}, result, eval_info={"seed": 0})
    store.has("resnet-n16-s0", "generalization", {"splits": ["id", "ood"]}, eval_info={"seed": 0})  # True

Every commit copies ``results.h5`` to a temporary sibling, appends to the copy, closes and fsyncs it, then
``os.replace``-s it over the original: a writer killed at any moment leaves the previous store intact (and at
worst a stale ``.results.h5.*.tmp`` that the next writer removes). Writers serialise on an exclusive lock of
``<path>.lock`` (:class:`probe.locks.FileLock`: ``flock``, or an exclusive-create ``<path>.lock.held`` with
stale-lock detection on file systems without ``flock``); readers never lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError
from probe.locks import FileLock
from probe.store.codec import attach_scales
from probe.store.entry import create_store, group_bytes, prepare_entry, write_entry
from probe.store.schema import (
    attr_str,
    check_name,
    entry_key,
    iter_entries,
    open_store,
    read_text,
    reading,
    utf8_text,
    write_text,
)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot fsync a directory; the rename is still atomic
            raise
    finally:
        os.close(fd)


class ResultStore:
    """Writer (and convenience reader) of one HDF5 result store; see ``docs/store.md`` for the layout.

    ``lock_timeout``: seconds a writer waits for another writer's lock before :class:`StoreError`.
    Overwritten or deleted results leave dead space behind; a commit rewrites the file compactly once that
    exceeds ``compact_min_bytes`` and half of the file (:meth:`compact` forces it).
    """

    compact_min_bytes = 8 << 20
    compact_fraction = 0.5

    def __init__(self, path: str | Path, lock_timeout: float = 600.0):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = float(lock_timeout)
        self._mutex = threading.RLock()
        self._depth = 0
        self._handle: h5py.File | None = None
        self._tmp: Path | None = None
        self._force_compact = False

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------ locking

    def _lock(self) -> FileLock:
        return FileLock(self.lock_path, timeout=self.lock_timeout, what=f"results store {self.path}").acquire()

    def _remove_stale_temporaries(self) -> None:
        # Only the lock holder creates temporaries, so any left now belong to a killed writer.
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass

    # -------------------------------------------------------------------------------------- transaction

    @contextmanager
    def transaction(self) -> Iterator[ResultStore]:
        """Batch writes into one copy-on-write commit (nested transactions join the outer one).

        On an exception nothing of the transaction is committed::

            with store.transaction():
                for model_id, result in results.items():
                    store.write(model_id, infos[model_id], "decomposition", {}, result)
        """
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            lock = self._lock()
            self._depth = 1
            try:
                self._remove_stale_temporaries()
                try:
                    yield self
                finally:
                    handle, self._handle, self._depth = self._handle, None, 0
                    if handle is not None:
                        garbage = int(handle.attrs.get("garbage_bytes", 0))
                        handle.close()
                if handle is not None and self._tmp is not None:  # something was written: commit
                    if self._force_compact or garbage > max(self.compact_min_bytes,
                                                            self.compact_fraction * self._tmp.stat().st_size):
                        self._tmp = self._compact_file(self._tmp)
                    _fsync_path(self._tmp)
                    os.replace(self._tmp, self.path)
                    self._tmp = None
                    _fsync_path(self.path.parent, directory=True)
            finally:
                self._force_compact = False
                if self._tmp is not None and self._tmp.exists():
                    self._tmp.unlink()
                self._tmp = None
                lock.release()

    def _writable(self) -> h5py.File:
        """The transaction's private copy of the store, made on the first change (no change → no commit)."""
        if not self._depth:
            raise StoreError("internal: store modified outside a transaction")
        if self._handle is None:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            self._tmp = Path(name)
            if self.path.exists():
                open_store(self.path).close()  # refuse to replace a file that is not a valid store
                shutil.copyfile(self.path, self._tmp)
                shutil.copymode(self.path, self._tmp)
                self._handle = h5py.File(self._tmp, "a", locking=False)
            else:
                os.chmod(self._tmp, 0o644)
                self._handle = create_store(self._tmp)
        return self._handle

    def _compact_file(self, src: Path) -> Path:
        """Rewrite ``src`` into a fresh temporary without dead space; return the new path."""
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        dst = Path(name)
        try:
            shutil.copymode(src, dst)
            with h5py.File(src, "r", locking=False) as old, create_store(dst, attr_str(old, "created")) as new:
                for model_id in old["models"]:
                    old.copy(old["models"][model_id], new["models"], name=model_id)
                for _m, _p, _k, entry in iter_entries(new):
                    for array in entry.get("arrays", {}):
                        attach_scales(entry, array)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        src.unlink()
        return dst

    def compact(self) -> None:
        """Rewrite the store without the space left by overwritten or deleted results."""
        with self._mutex:
            if self._depth:
                raise StoreError("compact() cannot run inside a transaction")
            self._force_compact = True
            with self.transaction():
                self._writable()

    # ---------------------------------------------------------------------------------------------- write

    def _add_garbage(self, group: h5py.Group) -> None:
        assert self._handle is not None
        self._handle.attrs["garbage_bytes"] = np.int64(int(self._handle.attrs.get("garbage_bytes", 0))
                                                       + group_bytes(group))

    def write(self, model_id: str, model_info: Mapping[str, Any] | None, probe: str, params: Any, result: Any,
              eval_info: Mapping[str, Any] | None = None, sha256: str = "",
              provenance: Mapping[str, Any] | None = None, model_path: str | None = None) -> str:
        """Store one probe result of one model; return its entry key.

        ``model_info`` (JSON-able dict: family, size, background, n_backgrounds, seed, grid axes, …) becomes
        the model's ``info`` and columns of :func:`probe.store.read_metrics`; the latest write wins.
        ``params`` / ``eval_info`` (dicts or JSON text) identify the entry: writing the same ones again
        replaces it. ``sha256`` is the checkpoint hash: writing a *different* hash for a stored model drops
        that model's old results (they describe other weights). ``provenance`` defaults to
        :func:`probe.provenance.provenance`; ``model_path`` defaults to ``model_info["path"]``::

            store.write("m0", {"family": "unet", "n_backgrounds": 4}, "generalization", {}, result,
                        sha256="9f2c…", eval_info={"seed": 0})
        """
        entry = prepare_entry(model_id, model_info, probe, params, result, eval_info, sha256, provenance,
                              model_path)
        with self.transaction():
            models = self._writable()["models"]
            group = models.get(model_id)
            if group is not None:
                old_sha = attr_str(group, "sha256")
                if entry.sha256 and old_sha and old_sha != entry.sha256 and "probes" in group:
                    self._add_garbage(group["probes"])
                    del group["probes"]
            else:
                group = models.create_group(model_id)
            if entry.sha256 or "sha256" not in group.attrs:
                group.attrs["sha256"] = entry.sha256
            path = entry.model_path if entry.model_path is not None else dict(model_info or {}).get("path")
            if path is not None or "path" not in group.attrs:
                group.attrs["path"] = "" if path is None else utf8_text(str(path))
            if "info" not in group or read_text(group["info"]) != entry.info_json:
                if "info" in group:
                    self._add_garbage(group["info"])
                write_text(group, "info", entry.info_json)
            probes = group.require_group("probes").require_group(probe)
            if entry.key in probes:
                self._add_garbage(probes[entry.key])
                del probes[entry.key]
            try:
                write_entry(probes.create_group(entry.key), entry)
            except BaseException:
                if entry.key in probes:
                    del probes[entry.key]
                raise
        return entry.key

    # ------------------------------------------------------------------------------------ queries/delete

    @contextmanager
    def _view(self) -> Iterator[h5py.File | None]:
        """The uncommitted file inside this thread's transaction, else the committed store (None if absent)."""
        with self._mutex:
            if self._handle is not None:
                yield self._handle
                return
        if not self.path.exists():
            yield None
            return
        with reading(self.path) as handle:
            yield handle

    def has(self, model_id: str, probe: str, params: Any, eval_info: Mapping[str, Any] | None = None,
            sha256: str | None = None) -> bool:
        """Whether the result of ``probe`` with these ``params``/``eval_info`` is stored for ``model_id``.

        ``params`` may be a dict or its JSON (``Probe.params_key()``). With ``sha256``, a result stored for
        other weights (a different non-empty hash) does not count::

            store.has("m0", "generalization", {}, eval_info={"seed": 0})
        """
        key = entry_key(params, eval_info)
        with self._view() as handle:
            if handle is None:
                return False
            group = handle.get(f"models/{check_name('model id', model_id)}/probes/{check_name('probe', probe)}"
                               f"/{key}")
            if group is None:
                return False
            stored = attr_str(group, "sha256")
            return not (sha256 and stored and stored != sha256)

    def entries(self) -> Any:
        """One row per stored result: model_id, probe, entry_key, params, eval, sha256, time, git_revision,
        provenance (JSON), n_metrics, arrays (list of names). Empty if the store does not exist yet."""
        from probe.store.readers import entries_frame

        with self._view() as handle:
            return entries_frame(handle)

    def delete(self, model_id: str, probe: str | None = None, params: Any = None,
               eval_info: Mapping[str, Any] | None = None) -> int:
        """Remove a model (``probe=None``), all results of one probe (``params=None``) or one result.

        Returns the number of results removed (0 when nothing matched)::

            store.delete("m0", "generalization")
        """
        check_name("model id", model_id)
        if probe is not None:
            check_name("probe", probe)
        with self.transaction():
            with self._view() as view:
                if view is None or model_id not in view["models"]:
                    return 0
            group = self._writable()["models"].get(model_id)
            if group is None:
                return 0
            probes = group.get("probes", {})
            if probe is None:
                removed = sum(len(probes[p]) for p in probes)
                target, parent, name = group, self._handle["models"], model_id
            elif params is None:
                if probe not in probes:
                    return 0
                removed, target, parent, name = len(probes[probe]), probes[probe], probes, probe
            else:
                key = entry_key(params, eval_info)
                if probe not in probes or key not in probes[probe]:
                    return 0
                removed, target, parent, name = 1, probes[probe][key], probes[probe], key
            self._add_garbage(target)
            del parent[name]
            return removed
