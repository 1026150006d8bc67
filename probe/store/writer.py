"""The single writer of a result store: atomic commits of what was added, under an exclusive lock file.

::

    from probe.store import ResultStore
    store = ResultStore("reports/derain_complexity/results.h5", study="derain_complexity")
    key = store.key_for("resnet-n16-s0", "generalization", {"splits": ["id", "ood"]}, eval_info, sha256=w)
    if not store.has(key):
        with store.transaction(keep_on_error=True, commit_every_s=5):   # incremental: progress is kept
            store.write("resnet-n16-s0", info, "generalization", {"splits": ["id", "ood"]}, result,
                        eval_info=eval_info, sha256=w)
            store.commit()                                              # e.g. after each model

A commit writes one new segment file holding only what it adds (:mod:`probe.store.segments`): O(what it adds),
atomic (the file appears complete or not at all), and a killed writer leaves the committed store intact and no
temporary file behind. Later commits merge segments (:mod:`probe.store.merge`, tiered: each result is rewritten
O(log n) times over the store's life, the number of segment files stays O(log n));
:meth:`ResultStore.compact` folds everything into ``results.h5``. Writers serialise on ``<path>.lock``
(:mod:`probe.store.folder`), taken at the first write only: a transaction that finds everything stored never
touches the folder (a read-only store works). Readers never lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError, one_line
from probe.locks import FileLock
from probe.store.cache import FileCache
from probe.store.checksum import seal
from probe.store.entry import create_store, model_digest, prepare_entry, write_entry
from probe.store.folder import io_message, lock_path, lock_store
from probe.store.keys import ContentKey
from probe.store.keys import model_path as _model_path  # write() has a model_path parameter
from probe.store.lookup import find_entry, find_model
from probe.store.merge import compact as _compact
from probe.store.merge import merge_tiers, next_seq
from probe.store.schema import STR, attr_str, check_name, entry_key, open_store, utf8_text, write_text
from probe.store.segments import segment_dir, segment_name, write_bytes_atomic
from probe.store.view import DELETED, StoreView, model_groups, open_view, overlay


class ResultStore:
    """Writer (and convenience reader) of one HDF5 result store; see ``docs/store.md`` for the layout.

    ``study``: the namespace this writer's models live in (``""``: none) — two studies measured into one store
    keep separate models even under equal model ids. ``lock_timeout``: seconds a writer waits for another
    writer's lock before :class:`StoreError`. ``merge_fanout`` / ``merge_ratio``: see
    :func:`probe.store.merge.merge_tiers`.
    """

    merge_ratio = 1.0
    merge_fanout = 4

    def __init__(self, path: str | Path, lock_timeout: float = 600.0, study: str = ""):
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self.lock_timeout = float(lock_timeout)
        self.study = check_name("study", study) if study else ""
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock: FileLock | None = None
        self._pending: h5py.File | None = None
        self._tombstones: list[list[str]] = []
        self._files: FileCache | None = None
        self._keep_on_error = False
        self._commit_every_s: float | None = None
        self._last_commit = time.monotonic()
        self.committed = 0  # results committed by this object
        self.commits = 0

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------ locking
    def _acquire(self) -> None:
        if self._lock is not None:
            return
        self._lock = lock_store(self.path, self.lock_timeout)

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    # -------------------------------------------------------------------------------------- transaction
    @contextmanager
    def transaction(self, keep_on_error: bool = False, commit_every_s: float | None = None
                    ) -> Iterator[ResultStore]:
        """Group writes; nested transactions join the outer one.

        Default: one atomic commit at the end, and an exception commits nothing. ``keep_on_error=True``
        (incremental, for measuring): every write is a finished result, so on an exception (Ctrl-C, SIGTERM,
        a crash) what was written is committed before the exception goes on; with ``commit_every_s`` a write
        also commits when that many seconds passed since the last commit; :meth:`commit` commits now::

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
            self._depth = 1
            self._keep_on_error, self._commit_every_s = keep_on_error, commit_every_s
            self._last_commit = time.monotonic()
            try:
                try:
                    yield self
                except BaseException:
                    if self._keep_on_error and self._pending is not None:
                        self.commit()  # a failed commit raises its own one-line StoreError from here
                    raise
                self.commit()
            finally:
                self._discard()
                if self._files is not None:
                    self._files.close()
                    self._files = None
                self._depth = 0
                self._keep_on_error, self._commit_every_s = False, None
                self._release()

    def _discard(self) -> None:
        pending, self._pending, self._tombstones = self._pending, None, []
        if pending is not None:
            pending.close()

    def _writable(self) -> h5py.File:
        """The transaction's uncommitted segment (in memory), made on the first change; takes the lock."""
        if not self._depth:
            raise StoreError("internal: store modified outside a transaction")
        if self._pending is None:
            self._acquire()
            if self.path.exists():
                open_store(self.path).close()  # refuse to add to a file that is not a valid store
            self._pending = create_store(f"pending-{id(self)}", memory=True)
        return self._pending

    def commit(self) -> int:
        """Commit what this transaction wrote since the last commit (one new segment file); returns the number
        of results committed. Disk full, a read-only folder or another I/O error: one :class:`StoreError` line
        saying that earlier commits are kept; the uncommitted results stay pending."""
        with self._mutex:
            pending = self._pending
            if pending is None:
                return 0
            n = sum(1 for _ in _pending_entries(pending))
            if self._tombstones:
                write_text(pending, DELETED, json.dumps(self._tombstones))
            try:
                base = self.path.exists()
                if not base:
                    pending.attrs["covers"] = np.int64(0)
                pending.flush()
                image = pending.id.get_file_image()
                if not base:
                    write_bytes_atomic(self.path, image)
                else:
                    folder = segment_dir(self.path)
                    folder.mkdir(exist_ok=True)
                    seq = next_seq(self.path)
                    write_bytes_atomic(folder / segment_name(seq, seq), image)
            except OSError as exc:
                kept = (f"the {self.committed} results committed before by this run are kept" if self.committed
                        else "results committed before are kept")
                raise StoreError(io_message(self.path, exc, f"committing {n} new result(s)",
                                            kept + "; free space (or fix the folder) and rerun to continue")
                                 ) from None
            self._discard()
            self.committed += n
            self.commits += 1
            self._last_commit = time.monotonic()
            try:
                merge_tiers(self.path, self.merge_fanout, self.merge_ratio)
            except (OSError, StoreError):
                pass  # merging only tidies: every result is already committed; the next commit tries again
            return n

    def _maybe_autocommit(self) -> None:
        if self._commit_every_s is not None and time.monotonic() - self._last_commit >= self._commit_every_s:
            self.commit()

    # ---------------------------------------------------------------------------------------- segments
    def compact(self) -> None:
        """Fold every segment into ``results.h5`` (one self-contained file, e.g. to publish), dropping the space
        of replaced or deleted results (:func:`probe.store.merge.compact`)."""
        with self._mutex:
            if self._depth:
                raise StoreError("compact() cannot run inside a transaction")
            if not self.path.exists():
                return
            self._depth = 1
            try:
                self._acquire()
                _compact(self.path)
            finally:
                self._depth = 0
                self._release()

    # ---------------------------------------------------------------------------------------------- write
    @contextmanager
    def _view(self) -> Iterator[StoreView | None]:
        """The committed store plus this transaction's uncommitted writes (None if there is neither). Inside a
        transaction the open files are cached (:class:`probe.store.cache.FileCache`)."""
        with self._mutex:
            if not self._depth:
                if not self.path.exists():
                    yield None
                    return
                with open_view(self.path) as view:
                    yield view
                return
            committed = self._cache().view()
            view = committed if self._pending is None else overlay(committed, self.path, self._pending,
                                                                      self._tombstones)
            try:
                yield view
            except StoreError as exc:
                if str(self.path) not in str(exc):
                    raise StoreError(one_line(f"results store {self.path}: {exc}")) from None
                raise

    def key_for(self, model_id: str, probe: str, params: Any, eval_info: Mapping[str, Any] | None = None,
                sha256: str = "", study: str | None = None) -> ContentKey:
        """The identity of a result: model (in ``study``, default this store's), probe, parameters, evaluation
        set (``eval_info``, with its content digest: :func:`probe.store.identity.eval_identity`) and weights."""
        return ContentKey(self.study if study is None else study, check_name("model id", model_id),
                          check_name("probe", probe), entry_key(params, eval_info), str(sha256 or ""))

    def write(self, model_id: str, model_info: Mapping[str, Any] | None, probe: str, params: Any, result: Any,
              eval_info: Mapping[str, Any] | None = None, sha256: str = "",
              provenance: Mapping[str, Any] | None = None, model_path: str | None = None) -> str:
        """Store one probe result of one model (in this store's study); return its entry key.

        ``model_info`` (JSON-able dict: family, size, background, n_backgrounds, seed, grid axes, …) becomes
        the model's ``info`` and columns of :func:`probe.store.read_metrics`; the latest write wins.
        ``params`` / ``eval_info`` (dicts or JSON text) identify the entry: writing the same ones again
        replaces it. ``sha256`` is the checkpoint hash: writing a *different* hash for a stored model drops
        that model's old results (they describe other weights). ``provenance`` defaults to
        :func:`probe.provenance.provenance`; ``model_path`` defaults to ``model_info["path"]``. Outside a
        transaction the write is committed at once::

            store.write("m0", {"family": "unet", "n_backgrounds": 4}, "generalization", {}, result,
                        sha256="9f2c…", eval_info={"seed": 0})
        """
        entry = prepare_entry(model_id, model_info, probe, params, result, eval_info, sha256, provenance,
                              model_path)
        study = self.study
        with self.transaction():
            pending = self._writable()
            current = find_model(self._cache(), self._pending, self._tombstones, study, model_id)
            old_sha = attr_str(current, "sha256") if current is not None else ""
            old_path = attr_str(current, "path") if current is not None else ""
            where = _model_path(study, model_id)
            if entry.sha256 and old_sha and old_sha != entry.sha256 and self._has_results(study, model_id):
                self._tombstones.append(["results", study, model_id, "", ""])
                if where in pending and "probes" in pending[where]:
                    del pending[where]["probes"]
            group = pending.require_group(where)
            group.attrs["model_id"] = model_id
            group.attrs["study"] = study
            group.attrs["sha256"] = entry.sha256 or old_sha
            path = entry.model_path if entry.model_path is not None else dict(model_info or {}).get("path")
            group.attrs["path"] = old_path if path is None else utf8_text(str(path))
            write_text(group, "info", entry.info_json)
            seal(group["info"], model_digest(group))
            probes = group.require_group("probes").require_group(probe)
            if entry.key in probes:
                del probes[entry.key]
            try:
                write_entry(probes.create_group(entry.key), entry)
            except BaseException:
                if entry.key in probes:
                    del probes[entry.key]
                raise
            self._maybe_autocommit()
        return entry.key

    # ------------------------------------------------------------------------------------ targeted lookups
    def _cache(self) -> FileCache:
        if self._files is None:
            self._files = FileCache(self.path)
        return self._files

    def _has_results(self, study: str, model_id: str) -> bool:
        with self._view() as view:
            return view is not None and any(k[0] == study and k[1] == model_id for k in view.entries)

    # ------------------------------------------------------------------------------------ queries/delete
    def has(self, model_id: str | ContentKey, probe: str | None = None, params: Any = None,
            eval_info: Mapping[str, Any] | None = None, sha256: str | None = None) -> bool:
        """Whether a result is stored: ``has(store.key_for(...))``, or ``has(model_id, probe, params,
        eval_info, sha256=None)``. With a (non-empty) ``sha256`` only a result of exactly those weights counts;
        ``params`` may be a dict or its JSON (``Probe.params_key()``)::

            store.has("m0", "generalization", {}, eval_info={"seed": 0}, sha256=weights_sha256)
        """
        if isinstance(model_id, ContentKey):
            key = model_id
        else:
            if probe is None:
                raise StoreError("has(): pass a ContentKey (store.key_for(...)) or model_id and probe")
            key = self.key_for(model_id, probe, params, eval_info, sha256 or "")
        with self._mutex:
            if not self._depth:
                with self.transaction():  # a lone query: the same lookup on this moment's files
                    return self.has(key)
            try:
                found = find_entry(self._cache(), self._pending, self._tombstones, key[:4])
            except StoreError as exc:
                if str(self.path) not in str(exc):
                    raise StoreError(one_line(f"results store {self.path}: {exc}")) from None
                raise
            if found is None:
                return False
            return not key.sha256 or attr_str(found, "sha256") == key.sha256

    def metrics(self) -> Any:
        """:func:`~probe.store.read_metrics` of this store as this thread sees it: inside a transaction the
        uncommitted writes are included (so a study-level probe can read the per-model results of the same
        transaction). An empty frame if the store does not exist yet."""
        from probe.store.readers import metrics_frame

        with self._view() as view:
            return metrics_frame([view] if view is not None else [])

    def model_info(self, model_id: str) -> dict[str, Any]:
        """:func:`~probe.store.read_model_info` as this thread sees the store (see :meth:`metrics`)."""
        with self._view() as view:
            if view is None:
                raise StoreError(f"results store {self.path}: no model {model_id!r} (the store does not exist)")
            return view.info(*view.resolve(model_id, self.study))

    def entries(self) -> Any:
        """One row per stored result: model_id, probe, entry_key, params, eval, sha256, time, git_revision,
        provenance (JSON), n_metrics, arrays (list of names), study, verified. Empty if there is no store."""
        from probe.store.readers import entries_frame

        with self._view() as view:
            return entries_frame(view)

    def delete(self, model_id: str, probe: str | None = None, params: Any = None,
               eval_info: Mapping[str, Any] | None = None) -> int:
        """Remove a model (``probe=None``), all results of one probe (``params=None``) or one result (of this
        store's study). Returns the number of results removed (0 when nothing matched)::

            store.delete("m0", "generalization")
        """
        check_name("model id", model_id)
        if probe is not None:
            check_name("probe", probe)
        study = self.study
        if probe is None:
            tomb = ["model", study, model_id, "", ""]
        elif params is None:
            tomb = ["probe", study, model_id, probe, ""]
        else:
            tomb = ["entry", study, model_id, probe, entry_key(params, eval_info)]
        with self.transaction():
            with self._view() as view:
                if view is None or (study, model_id) not in view.models:
                    return 0
                removed = view.drop(*tomb)
            pending = self._writable()
            where = _model_path(study, model_id)
            if where in pending:
                target = {"model": where, "probe": f"{where}/probes/{probe}",
                          "entry": f"{where}/probes/{probe}/{tomb[4]}"}[tomb[0]]
                if target in pending:
                    del pending[target]
            self._tombstones.append(tomb)
            return removed


def _pending_entries(handle: h5py.File) -> Iterator[h5py.Group]:
    for _study, _model, group in model_groups(handle):
        probes = group.get("probes", {})
        for probe in probes:
            yield from probes[probe].values()


__all__ = ["STR", "ContentKey", "ResultStore"]
