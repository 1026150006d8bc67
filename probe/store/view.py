"""One consistent view of a store: the base file and its segments (and a writer's uncommitted segment) merged.

Files are applied oldest first; each first applies its deletions (``/deleted``) to what is older, then adds its
models and entries (a newer entry or model info replaces an older one)::

    with open_view("reports/study/results.h5") as view:
        for study, model_id, probe, key, entry in view.iter_entries():
            ...

Every file is checked for objects probe never writes before anything is read (:mod:`probe.store.safety`);
parts are verified against their checksums as they are read (:class:`probe.store.checksum.Verifier`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError, one_line
from probe.store.checksum import Verifier
from probe.store.schema import open_store, read_text

Key = tuple[str, str, str, str]  # study, model_id, probe, entry_key
DELETED = "deleted"
#: what reading a damaged or hostile file can raise; readers turn these into one StoreError line
READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError,
                json.JSONDecodeError, UnicodeDecodeError, OverflowError, MemoryError)


def model_paths(handle: h5py.File, store: Any = "") -> Iterator[tuple[str, str, str]]:
    """``(study, model_id, path)`` of one file: ``/models/<id>`` (no study) and ``/studies/<s>/models/<id>``;
    every link on the way must be a hard link (:func:`probe.store.safety.hard_children`)."""
    from probe.store.safety import hard_children

    store = store or handle.filename
    top = hard_children(handle, store)
    if "models" in top:
        for model_id in hard_children(handle["models"], store):
            yield "", model_id, f"models/{model_id}"
    if "studies" in top:
        for study in hard_children(handle["studies"], store):
            if "models" in hard_children(handle["studies"][study], store):
                for model_id in hard_children(handle["studies"][study]["models"], store):
                    yield study, model_id, f"studies/{study}/models/{model_id}"


def model_groups(handle: h5py.File) -> Iterator[tuple[str, str, h5py.Group]]:
    """``(study, model_id, group)`` of one file (see :func:`model_paths`)."""
    for study, model_id, path in model_paths(handle):
        yield study, model_id, handle[path]


def read_tombstones(handle: h5py.Group) -> list[list[str]]:
    from probe.store.safety import check_dataset

    if DELETED not in handle:
        return []
    check_dataset(handle[DELETED], handle.file.filename, DELETED)
    value = json.loads(read_text(handle[DELETED]))
    if not isinstance(value, list) or not all(isinstance(t, list) and len(t) == 5 for t in value):
        raise StoreError("the list of deletions is malformed")
    return value


class StoreView:
    """Merged, read-only view of the files of one store (see the module doc). Close it, or use :func:`open_view`."""

    def __init__(self, path: Path, files: list[tuple[h5py.File, Verifier]], owned: list[h5py.File]):
        self.path = path
        self.files = files
        self._owned = owned
        #: (study, model_id) / Key → (file, path of the group in it, verifier); groups are opened on use
        self.models: dict[tuple[str, str], tuple[h5py.File, str, Verifier]] = {}
        self.entries: dict[Key, tuple[h5py.File, str, Verifier]] = {}
        for handle, verify in files:
            self._apply(handle, verify)

    # ------------------------------------------------------------------------------------------ build
    def _apply(self, handle: h5py.File, verify: Verifier) -> None:
        try:
            self._apply_file(handle, verify)
        except StoreError:
            raise
        except READ_ERRORS as exc:
            raise StoreError(one_line(f"results store {verify.store}: corrupt ({type(exc).__name__}: {exc})")
                             ) from None

    def _apply_file(self, handle: h5py.File, verify: Verifier) -> None:
        for kind, study, model_id, probe, key in read_tombstones(handle):
            self.drop(kind, study, model_id, probe, key)
        from probe.store.safety import hard_children

        store = verify.store
        for study, model_id, path in model_paths(handle, store):
            self.models[(study, model_id)] = (handle, path, verify)
            if "probes" not in hard_children(handle[path], store):
                continue
            probes = handle[path]["probes"]
            for probe in hard_children(probes, store):
                for key in hard_children(probes[probe], store):
                    self.entries[(study, model_id, probe, key)] = (handle, f"{path}/probes/{probe}/{key}", verify)

    def group(self, key: Key) -> h5py.Group:
        """The HDF5 group of one entry, its whole subtree checked for unsafe objects on first use."""
        handle, path, verify = self.entries[key]
        try:
            group = handle[path]
        except READ_ERRORS as exc:
            raise StoreError(one_line(f"results store {verify.store}: entry /{path} is damaged "
                                      f"({type(exc).__name__}: {exc})")) from None
        if path not in verify.checked:
            from probe.store.safety import check_tree

            check_tree(group, verify.store)
            verify.checked.add(path)
        return group

    def model_group(self, study: str, model_id: str) -> h5py.Group:
        handle, path, _verify = self.models[(study, model_id)]
        return handle[path]

    def drop(self, kind: str, study: str, model_id: str, probe: str = "", key: str = "") -> int:
        """Apply one deletion: ``model`` (the model and its results), ``results`` (all its results),
        ``probe`` (one probe's results) or ``entry`` (one result). Returns the number of results removed."""
        doomed = [k for k in self.entries if k[0] == study and k[1] == model_id
                  and (kind in ("model", "results") or (k[2] == probe and (kind == "probe" or k[3] == key)))]
        for k in doomed:
            del self.entries[k]
        if kind == "model":
            self.models.pop((study, model_id), None)
        return len(doomed)

    # ------------------------------------------------------------------------------------------ query
    @property
    def unverified(self) -> bool:
        return any(not verify.required for _h, verify in self.files)

    def studies(self) -> list[str]:
        return sorted({s for s, _m in self.models})

    def iter_entries(self, study: str | None = None) -> Iterator[tuple[str, str, str, str, h5py.Group]]:
        for k in sorted(self.entries):
            if study is None or k[0] == study:
                yield (*k, self.group(k))

    def verifier(self, key: Key) -> Verifier:
        return self.entries[key][2]

    def resolve(self, model_id: str, study: str | None) -> tuple[str, str]:
        """``(study, model_id)`` of a stored model; with ``study=None`` the model id must name one study's model."""
        if study is not None:
            if (study, model_id) not in self.models:
                raise StoreError(f"results store {self.path}: no model {model_id!r}"
                                 + (f" in study {study!r}" if study else "") + "; models: "
                                 + (", ".join(sorted({m for s, m in self.models if s == study})) or "none"))
            return study, model_id
        matches = sorted(s for s, m in self.models if m == model_id)
        if not matches:
            raise StoreError(f"results store {self.path}: no model {model_id!r}; models: "
                             f"{', '.join(sorted({m for _s, m in self.models})) or 'none'}")
        if len(matches) > 1:
            raise StoreError(f"results store {self.path}: model {model_id!r} is stored for several studies "
                             f"({', '.join(repr(s) for s in matches)}); pass study=")
        return matches[0], model_id

    def info(self, study: str, model_id: str) -> dict[str, Any]:
        """The model's info dict, plus its ``sha256`` and ``path`` attributes (verified)."""
        from probe.store.entry import model_digest
        from probe.store.safety import check_dataset
        from probe.store.schema import attr_str

        handle, path, verify = self.models[(study, model_id)]
        group = handle[path]
        if "info" in group:
            check_dataset(group["info"], verify.store, f"{path}/info")
            verify(group["info"], model_digest(group), "model info")
            stored = (attr_str(group, "study", study), attr_str(group, "model_id", model_id))
            if verify.required and stored != (study, model_id):
                raise StoreError(f"results store {self.path}: model group /{path} is damaged: it holds model "
                                 f"{stored[1]!r} of study {stored[0]!r}")
        info = json.loads(read_text(group["info"])) if "info" in group else {}
        if not isinstance(info, dict):
            raise StoreError(f"results store {self.path}: model {model_id!r}: info is not a JSON object")
        return {**info, "sha256": attr_str(group, "sha256"), "path": attr_str(group, "path")}

    def texts(self, key: Key) -> dict[str, str]:
        """The entry's params / eval / provenance texts and attributes, verified."""
        from probe.store.entry import ENTRY_ATTRS, meta_digest
        from probe.store.schema import attr_str

        group, verify = self.group(key), self.verifier(key)
        verify(group, meta_digest(group))
        out = {name: attr_str(group, name) for name in ENTRY_ATTRS}
        if verify.required and (out["model_id"], out["probe"], out["entry_key"]) != key[1:]:
            raise StoreError(f"results store {self.path}: entry {group.name} is damaged: it holds "
                             f"{out['model_id']}/{out['probe']}/{out['entry_key']}")
        for name in ("params", "eval", "provenance"):
            out[name] = read_text(group[name]) if name in group else "{}"
        return out

    def close(self) -> None:
        for handle in self._owned:
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - closing a damaged file must not hide the real error
                pass


def _open_files(path: Path) -> tuple[list[tuple[h5py.File, Verifier]], list[h5py.File]]:
    from probe.store.segments import list_segments

    for _attempt in range(8):  # a concurrent merge may delete a listed segment: list again
        names_before = list_segments(path, 0) if path.is_file() else []
        handle = open_store(path)
        opened = [handle]
        try:
            version = int(np.asarray(handle.attrs["schema_version"]).item())
            covers = int(np.asarray(handle.attrs.get("covers", 0)).item())
            files = [(handle, Verifier(path, required=version >= 2))]
            segments = [s for s in names_before if s.last > covers]
            for segment in segments:
                try:
                    seg = open_store(segment.path)
                except StoreError:
                    if not segment.path.exists():
                        raise FileNotFoundError(segment.path) from None
                    raise
                opened.append(seg)
                files.append((seg, Verifier(f"{path} (segment {segment.path.name})", required=True)))
            return files, opened
        except FileNotFoundError:
            for h in opened:
                h.close()
            continue
        except BaseException:
            for h in opened:
                h.close()
            raise
    raise StoreError(f"results store {path}: its segments keep changing while being read; try again")


@contextmanager
def open_view(path: str | Path, pending: h5py.File | None = None) -> Iterator[StoreView]:
    """``with open_view(path) as view:`` the committed store (plus a writer's ``pending`` file, newest).

    A missing store with a ``pending`` file gives a view of the pending file alone. Damage found while reading
    (unreadable bytes, malformed objects, checksum mismatches) is one :class:`StoreError` line naming the store.
    """
    path = Path(path)
    try:
        if path.exists() or pending is None:
            files, owned = _open_files(path)
        else:
            files, owned = [], []
        if pending is not None:
            files.append((pending, Verifier(f"{path} (uncommitted)", required=True)))
        view = StoreView(path, files, owned)
    except StoreError:
        raise
    except READ_ERRORS as exc:
        raise StoreError(one_line(f"results store {path}: corrupt ({type(exc).__name__}: {exc})")) from None
    try:
        yield view
    except StoreError as exc:
        text = str(exc)
        if str(path) not in text:
            raise StoreError(one_line(f"results store {path}: {text}")) from None
        raise
    except READ_ERRORS as exc:
        raise StoreError(one_line(f"results store {path}: corrupt ({type(exc).__name__}: {exc})")) from None
    finally:
        view.close()


def overlay(view: StoreView | None, path: Path, pending: h5py.File, tombstones: list[list[str]]) -> StoreView:
    """``view`` (committed, may be None) with a writer's uncommitted deletions and ``pending`` file on top."""
    merged = StoreView(path, [], [])
    if view is not None:
        merged.files = list(view.files)
        merged.models = dict(view.models)
        merged.entries = dict(view.entries)
    for tomb in tombstones:
        merged.drop(*tomb)
    verify = Verifier(f"{path} (uncommitted)", required=True)
    merged.files.append((pending, verify))
    merged._apply(pending, verify)
    return merged
