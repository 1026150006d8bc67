"""One stored result as the writer sees it: validated and encoded up front (:func:`prepare_entry`), then written
into its HDF5 group (:func:`write_entry`). Used by :class:`probe.store.writer.ResultStore` only; the layout is
documented in ``docs/store.md`` and :mod:`probe.store.schema`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe import provenance as _provenance
from probe.errors import StoreError
from probe.store.checksum import Digest, seal
from probe.store.codec import (
    MetricTable,
    PreparedArray,
    array_digest,
    metrics_digest,
    prepare_array,
    prepare_metrics,
    write_array,
    write_metrics,
)
from probe.store.schema import (
    LIBVER,
    SCHEMA_VERSION,
    attr_str,
    canonical,
    check_name,
    dumps,
    entry_key,
    parse_params,
    read_text,
    write_text,
)


@dataclass
class PreparedEntry:
    """One result, validated and encoded (JSON texts, metric table, arrays), ready to be written."""

    model_id: str
    info_json: str
    model_path: str | None
    probe: str
    key: str
    params_json: str
    eval_json: str
    provenance: dict[str, Any]
    sha256: str
    metrics: MetricTable
    arrays: list[PreparedArray]


def prepare_entry(model_id: str, model_info: Any, probe: str, params: Any, result: Any, eval_info: Any,
                  sha256: str, provenance: Mapping[str, Any] | None, model_path: str | None) -> PreparedEntry:
    """Validate and encode one result before any file is touched (bad input → :class:`StoreError`)."""
    check_name("model id", model_id)
    check_name("probe", probe)
    if model_info is None:
        model_info = {}
    if not isinstance(model_info, Mapping):
        raise StoreError(f"model_info for {model_id!r} must be a dict, not {type(model_info).__name__}")
    params = parse_params(params)
    eval_info = parse_params(eval_info, "eval_info")
    if not (hasattr(result, "arrays") and hasattr(result, "metrics")):
        raise StoreError(f"result for {model_id!r}/{probe!r} is a {type(result).__name__}: need an object "
                         "with .arrays and .metrics (probe.probes.ProbeResult)")
    arrays = result.arrays or {}
    if not isinstance(arrays, Mapping):
        raise StoreError(f"result.arrays of {model_id!r}/{probe!r} must be a dict of name → DataArray")
    prov = dict(provenance) if provenance is not None else _provenance.provenance()
    return PreparedEntry(
        model_id=model_id, info_json=dumps(dict(model_info), f"model_info of {model_id!r}", sort_keys=False),
        model_path=None if model_path is None else str(model_path), probe=probe,
        key=entry_key(params, eval_info), params_json=canonical(params, "params"),
        eval_json=canonical(eval_info, "eval_info"), provenance=prov, sha256=str(sha256 or ""),
        metrics=prepare_metrics(result.metrics),
        arrays=[prepare_array(str(name), array) for name, array in arrays.items()])


def write_entry(group: h5py.Group, entry: PreparedEntry) -> None:
    """Write a prepared entry into its (new, empty) HDF5 group."""
    prov = entry.provenance
    group.attrs["probe"] = entry.probe
    group.attrs["model_id"] = entry.model_id
    group.attrs["entry_key"] = entry.key
    group.attrs["sha256"] = entry.sha256
    group.attrs["time"] = str(prov.get("time") or _provenance.now_iso())
    group.attrs["git_revision"] = str(prov.get("git_revision") or "unknown")
    write_text(group, "params", entry.params_json)
    write_text(group, "eval", entry.eval_json)
    write_text(group, "provenance", dumps(prov, "provenance"))
    write_metrics(group, entry.metrics)
    seal(group["metrics"], metrics_digest(group)[0])
    group.create_group("arrays")
    group.create_group("coords")
    for array in entry.arrays:
        write_array(group, array)
        seal(group["arrays"][array.name], array_digest(group, array.name)[0])
    seal(group, meta_digest(group))


ENTRY_ATTRS = ("probe", "model_id", "entry_key", "sha256", "time", "git_revision")
MODEL_ATTRS = ("model_id", "study", "sha256", "path")


def meta_digest(group: h5py.Group) -> Digest:
    """Checksum of an entry's attributes and its params / eval / provenance texts."""
    digest = Digest("entry")
    for name in ENTRY_ATTRS:
        digest.text(name).text(attr_str(group, name))
    for name in ("params", "eval", "provenance"):
        digest.text(name).text(read_text(group[name]) if name in group else "")
    return digest


def model_digest(group: h5py.Group) -> Digest:
    """Checksum of a model group's attributes and its info text (sealed on the ``info`` dataset)."""
    digest = Digest("model")
    for name in MODEL_ATTRS:
        digest.text(name).text(attr_str(group, name))
    return digest.text(read_text(group["info"]) if "info" in group else "")


def group_bytes(group: h5py.Group | h5py.Dataset) -> int:
    """Approximate file space held by a group or dataset (data storage + ~1 KB of metadata per object)."""
    if isinstance(group, h5py.Dataset):
        return 1024 + int(group.id.get_storage_size())
    total = [1024]

    def visit(_name: str, obj: Any) -> None:
        total[0] += 1024
        if isinstance(obj, h5py.Dataset):
            total[0] += int(obj.id.get_storage_size())

    group.visititems(visit)
    return total[0]


def create_store(path: Path | str, created: str | None = None, memory: bool = False) -> h5py.File:
    """A new, empty store file (schema version, creation time, ``/models``) at ``path``, or in memory
    (``memory=True``: nothing touches the disk; ``handle.id.get_file_image()`` gives its bytes)."""
    if memory:
        handle = h5py.File(str(path), "w", driver="core", backing_store=False, libver=LIBVER, locking=False)
    else:
        handle = h5py.File(path, "w", libver=LIBVER, locking=False)
    handle.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    handle.attrs["created"] = created or _provenance.now_iso()
    handle.create_group("models")
    return handle
