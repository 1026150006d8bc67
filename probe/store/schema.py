"""The on-disk layout of a result store (schema version 1), shared by the writer and the readers.

::

    /                                      attrs schema_version=1, created, garbage_bytes
    /models/<model_id>/                    attrs sha256, path; string dataset info (JSON)
    /models/<model_id>/probes/<probe>/<entry_key>/
        attrs probe, model_id, entry_key, sha256, time, git_revision
        params, eval, provenance           string datasets (JSON)
        metrics/<column>                   one 1-d dataset per column (float64 or UTF-8 strings)
        arrays/<name>                      values; attrs dims, attrs (JSON)
        coords/<name>/<coord>              coordinates; dimension coordinates are HDF5 dimension scales

``docs/store.md`` describes every field. ``entry_key`` is :func:`entry_key` of the probe parameters and the
evaluation-set description::

    >>> entry_key({"splits": ["id", "ood"]}, {"seed": 0})
    'd568b239fe7ab67d'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError, one_line

SCHEMA_VERSION = 2
#: Versions this probe reads: 1 (no checksums: read, marked unverified) and 2 (checksums, segments, studies).
READABLE_VERSIONS = (1, 2)
#: HDF5 object-format bounds of the files probe writes (v110+: metadata blocks carry checksums of their own).
LIBVER = ("v110", "latest")
STR = h5py.string_dtype("utf-8")
#: Metric-row keys that would clash with the columns :func:`probe.store.read_metrics` adds itself.
RESERVED_COLUMNS = ("model_id", "probe", "params", "eval")
#: DataArray/coordinate ``attrs`` are stored as one JSON attribute; HDF5 attributes stop at 64 KB.
MAX_ATTR_JSON = 60_000


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)  # Paths, dtypes, ... (like Probe.params_key)


_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """JSON text with lone surrogates (undecodable bytes of file names, PEP 383) as ``\\uXXXX`` escapes.

    The result is valid UTF-8 and ``json.loads`` gives the original strings back; text without surrogates is
    returned unchanged (so entry keys of ordinary parameters do not change)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def utf8_text(text: str) -> str:
    """``text`` if it encodes as UTF-8, else its file-system bytes with undecodable ones as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def dumps(obj: Any, what: str = "value", sort_keys: bool = True) -> str:
    """JSON text of ``obj`` (numpy scalars/arrays become numbers/lists, other objects their ``str``)."""
    try:
        return escape_surrogates(json.dumps(obj, sort_keys=sort_keys, default=_default, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(one_line(f"{what} is not JSON-serialisable: {exc}")) from None


def parse_params(params: Any, what: str = "params") -> Any:
    """Accept parameters as a mapping or as their JSON text (``Probe.params_key()``)."""
    if isinstance(params, (str, bytes)):
        try:
            return json.loads(params)
        except json.JSONDecodeError as exc:
            raise StoreError(one_line(f"{what} {params!r} is not valid JSON: {exc}")) from None
    return {} if params is None else params


def canonical(obj: Any, what: str = "value") -> str:
    """The canonical JSON of ``obj`` (sorted keys, no spaces): equal inputs give equal text."""
    text = dumps(parse_params(obj, what), what)
    return escape_surrogates(json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                                        ensure_ascii=False))


def entry_key(params: Any, eval_info: Any = None) -> str:
    """Short, stable hash (16 hex digits) naming one stored result of a (model, probe)."""
    text = canonical({"params": parse_params(params), "eval": parse_params(eval_info, "eval_info")})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_name(kind: str, name: Any) -> str:
    """Validate an HDF5 path component (model id, probe, array, coordinate or column name)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
        raise StoreError(f"invalid {kind} name {name!r}: need a non-empty string without '/'")
    if utf8_text(name) != name:
        raise StoreError(f"invalid {kind} name {utf8_text(name)!r}: not valid UTF-8 (a file or folder name with "
                         "undecodable bytes); rename it")
    return name


def write_text(group: h5py.Group, name: str, text: str) -> None:
    """A scalar UTF-8 string dataset (configs go here, never into attributes: 64 KB limit)."""
    if name in group:
        del group[name]
    group.create_dataset(name, data=text, dtype=STR)


def read_text(dataset: h5py.Dataset) -> str:
    value = dataset.asstr()[()] if dataset.dtype.kind in "OS" else dataset[()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_json(group: h5py.Group, name: str, default: Any = None) -> Any:
    return json.loads(read_text(group[name])) if name in group else default


def attr_str(obj: h5py.HLObject, name: str, default: str = "") -> str:
    value = obj.attrs.get(name, default)
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def open_store(path: str | Path) -> h5py.File:
    """Open an existing store read-only, checking it is a probe result store of this schema version.

    Readers take no lock: a store is only ever replaced as a whole (``os.replace``), never modified in place.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"results store {path}: no such file")
    try:
        handle = h5py.File(path, "r", locking=False)
    except (OSError, ValueError) as exc:
        raise StoreError(one_line(f"results store {path}: not a readable HDF5 file ({exc})")) from None
    try:
        version = handle.attrs.get("schema_version")
        if version is None or "models" not in handle:
            raise StoreError(f"results store {path}: not a probe result store (no schema_version / models)")
        if int(np.asarray(version).item()) not in READABLE_VERSIONS:
            raise StoreError(f"results store {path}: schema version {version}, this probe reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
        from probe.store.safety import hard_children

        hard_children(handle, path)  # deeper objects are checked as they are reached (probe.store.view)
    except StoreError:
        handle.close()
        raise
    except Exception as exc:
        handle.close()
        raise StoreError(one_line(f"results store {path}: corrupt ({type(exc).__name__}: {exc})")) from None
    return handle


@contextmanager
def reading(path: str | Path) -> Iterator[h5py.File]:
    """``with reading(path) as f:`` — open a store read-only; damage found while reading → StoreError."""
    handle = open_store(path)
    try:
        yield handle
    except StoreError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise StoreError(one_line(f"results store {path}: corrupt ({type(exc).__name__}: {exc})")) from None
    finally:
        handle.close()


def iter_entries(handle: h5py.File | h5py.Group) -> Iterator[tuple[str, str, str, h5py.Group]]:
    """Yield ``(model_id, probe, entry_key, entry_group)`` for every stored result, sorted by name."""
    models = handle["models"]
    for model_id in sorted(models):
        probes = models[model_id].get("probes")
        if probes is None:
            continue
        for probe in sorted(probes):
            for key in sorted(probes[probe]):
                yield model_id, probe, key, probes[probe][key]
