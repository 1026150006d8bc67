"""Encoding of metric tables and named-dimension arrays into HDF5 groups, and back.

Everything is validated and converted in memory first (:func:`prepare_metrics`, :func:`prepare_array`), so
a bad result raises :class:`probe.errors.StoreError` before the store file is touched::

    table = prepare_metrics([{"split": "ood", "metric": "psnr", "value": 24.1, "layer": 3}])
    table.columns["layer"].kind   # 'int' (stored as float64, restored as int64)
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from probe.errors import StoreError
from probe.store.checksum import Digest
from probe.store.schema import MAX_ATTR_JSON, RESERVED_COLUMNS, STR, check_name, dumps, is_missing

# ---------------------------------------------------------------------------------------------- metrics


@dataclass
class Column:
    kind: str  # "str" | "float" | "int" | "bool"
    data: np.ndarray


@dataclass
class MetricTable:
    n_rows: int
    columns: dict[str, Column] = field(default_factory=dict)


def _value_kind(value: Any, column: str) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "str"
    raise StoreError(f"metric column {column!r}: value {value!r} ({type(value).__name__}) is not a number, "
                     "string, bool or None")


def prepare_metrics(rows: Any) -> MetricTable:
    """Validate metric rows (``split``, ``metric``, ``value`` + extra keys) into typed columns.

    Numbers and bools are stored as float64 (missing → NaN) with the original kind recorded so the
    reader restores ints and bools; a column holding any string is stored as UTF-8 strings (missing → "").
    """
    if rows is None:
        rows = []
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.to_dict("records")
    rows = list(rows)
    order: dict[str, None] = {"split": None, "metric": None, "value": None}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise StoreError(f"metric row {i} is a {type(row).__name__}, not a mapping")
        for key in ("split", "metric", "value"):
            if key not in row:
                raise StoreError(f"metric row {i} has no {key!r} key: {dict(row)!r}")
        for key in row:
            if key not in order:
                check_name("metric column", key)
                if key in RESERVED_COLUMNS:
                    raise StoreError(f"metric row {i}: column name {key!r} is reserved "
                                     f"({', '.join(RESERVED_COLUMNS)})")
                order[key] = None
    table = MetricTable(n_rows=len(rows))
    for name in order:
        values = [row.get(name) for row in rows]
        if name in ("split", "metric"):
            bad = [v for v in values if not isinstance(v, str) or not v]
            if bad:
                raise StoreError(f"metric {name!r} must be a non-empty string, got {bad[0]!r}")
            table.columns[name] = Column("str", np.array(values, dtype=object))
            continue
        if name == "value":
            try:
                data = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
            except (TypeError, ValueError):
                bad = next(v for v in values if v is not None and not isinstance(v, numbers.Real))
                raise StoreError(f"metric 'value' must be a number, got {bad!r}") from None
            table.columns[name] = Column("float", data)
            continue
        kinds = {_value_kind(v, name) for v in values} - {None}
        kind = next((k for k in ("str", "float", "int", "bool") if k in kinds), "float")
        if kind == "str":
            data = np.array(["" if is_missing(v) else str(v) for v in values], dtype=object)
        else:
            data = np.array([np.nan if is_missing(v) else float(v) for v in values], dtype=np.float64)
        table.columns[name] = Column(kind, data)
    return table


def write_metrics(entry: h5py.Group, table: MetricTable) -> None:
    group = entry.create_group("metrics")
    group.attrs["columns"] = json.dumps(list(table.columns))
    group.attrs["n_rows"] = table.n_rows
    for name, column in table.columns.items():
        if column.kind == "str":
            ds = group.create_dataset(name, data=column.data, dtype=STR)
        else:
            ds = group.create_dataset(name, data=column.data, dtype=np.float64)
        ds.attrs["kind"] = column.kind


def guard_size(ds: h5py.Dataset) -> None:
    """Refuse to read a dataset whose declared size cannot come from this file (damaged metadata): at most
    2000 × the file's size (beyond gzip's ratio) or 64 MiB, whichever is larger."""
    declared = int(ds.size) * max(int(ds.dtype.itemsize), 1)
    limit = max(64 << 20, 2000 * int(ds.file.id.get_filesize()))
    if declared > limit:
        raise StoreError(f"dataset {ds.name} declares {declared} bytes, more than its file can hold (damaged)")


def _raw_column(ds: h5py.Dataset) -> np.ndarray:
    guard_size(ds)
    if ds.attrs.get("kind", "float") == "str":
        return np.array(ds.asstr()[()], dtype=object)
    return np.asarray(ds[()], dtype=np.float64)


def metrics_digest(entry: h5py.Group) -> tuple[Digest, dict[str, tuple[str, np.ndarray]]]:
    """The checksum of an entry's metric table and its raw columns (``name → (kind, values)``)."""
    group = entry["metrics"]
    names = json.loads(group.attrs["columns"])
    digest = Digest("metrics").text(group.attrs["columns"]).text(int(np.asarray(group.attrs["n_rows"])))
    raw: dict[str, tuple[str, np.ndarray]] = {}
    for name in names:
        ds = group[name]
        kind = str(ds.attrs.get("kind", "float"))
        raw[name] = (kind, _raw_column(ds))
        digest.text(name).text(kind).array(raw[name][1])
    return digest, raw


def read_metrics_group(entry: h5py.Group, verify: Any = None) -> dict[str, np.ndarray]:
    """The metric columns of one entry, in stored order, with ints and bools restored where complete.

    ``verify`` (a :class:`probe.store.checksum.Verifier`) checks the table's checksum first."""
    digest, raw = metrics_digest(entry)
    if verify is not None:
        verify(entry["metrics"], digest, "metrics")
    n_rows = int(np.asarray(entry["metrics"].attrs["n_rows"]))
    out: dict[str, np.ndarray] = {}
    for name, (kind, data) in raw.items():
        if data.shape != (n_rows,):
            raise StoreError(f"metric column {name!r} has shape {data.shape}, expected ({n_rows},)")
        if kind in ("int", "bool") and not np.isnan(data).any():
            data = data.astype(np.int64 if kind == "int" else bool)
        out[name] = data
    return out


# ----------------------------------------------------------------------------------------------- arrays


@dataclass
class Encoded:
    data: np.ndarray
    dims: tuple[str, ...]
    attrs_json: str
    str_dtype: str = ""  # "U" / "O" for string values (both stored as vlen UTF-8)


@dataclass
class PreparedArray:
    name: str
    values: Encoded
    coords: dict[str, Encoded]


def _encode(values: Any, dims: tuple[str, ...], attrs: Any, what: str) -> Encoded:
    data = np.asarray(values)
    kind = data.dtype.kind
    str_dtype = ""
    if kind == "U" or (kind == "O" and all(isinstance(v, str) for v in data.flat)):
        str_dtype = kind
        data = np.array(data, dtype=object)
    elif kind not in "biufcS":
        raise StoreError(f"{what}: unsupported dtype {data.dtype} (numbers, bools and strings only)")
    attrs_json = dumps(dict(attrs or {}), f"{what} attrs")
    if len(attrs_json.encode("utf-8")) > MAX_ATTR_JSON:
        raise StoreError(f"{what}: attrs are {len(attrs_json)} bytes of JSON, over the {MAX_ATTR_JSON}-byte "
                         "limit of an HDF5 attribute; store large data as an array")
    for dim in dims:
        check_name(f"{what} dimension", dim)
    return Encoded(data, tuple(dims), attrs_json, str_dtype)


def prepare_array(name: str, array: Any) -> PreparedArray:
    """Validate one result array: an ``xarray.DataArray`` (or a plain numpy array, dims dim_0, dim_1, …)."""
    check_name("array", name)
    what = f"array {name!r}"
    if not (hasattr(array, "dims") and hasattr(array, "coords") and hasattr(array, "values")):
        if isinstance(array, np.ndarray) or np.isscalar(array):
            data = np.asarray(array)
            return PreparedArray(name, _encode(data, tuple(f"dim_{i}" for i in range(data.ndim)), {}, what), {})
        raise StoreError(f"{what} is a {type(array).__name__}, not an xarray.DataArray or numpy array")
    dims = tuple(str(d) for d in array.dims)
    if len(set(dims)) != len(dims):
        raise StoreError(f"{what}: repeated dimension names {dims}")
    values = _encode(array.values, dims, array.attrs, what)
    coords = {}
    for cname, coord in array.coords.items():
        cname = str(cname)
        check_name(f"{what} coordinate", cname)
        cdims = tuple(str(d) for d in coord.dims)
        coords[cname] = _encode(coord.values, cdims, coord.attrs, f"{what} coordinate {cname!r}")
    return PreparedArray(name, values, coords)


def _create(group: h5py.Group, name: str, enc: Encoded, compress: bool) -> h5py.Dataset:
    kwargs: dict[str, Any] = {}
    if enc.str_dtype:
        kwargs["dtype"] = STR
    elif compress and enc.data.ndim and enc.data.size:
        kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
    ds = group.create_dataset(name, data=enc.data, **kwargs)
    ds.attrs["dims"] = np.array(enc.dims, dtype=STR)
    ds.attrs["attrs"] = enc.attrs_json
    if enc.str_dtype:
        ds.attrs["str_dtype"] = enc.str_dtype
    return ds


def write_array(entry: h5py.Group, prepared: PreparedArray) -> None:
    """``arrays/<name>`` (gzip) + ``coords/<name>/<coord>``; dimension coordinates become dimension scales."""
    _create(entry.require_group("arrays"), prepared.name, prepared.values, compress=True)
    coords = entry.require_group("coords").create_group(prepared.name)
    for cname, enc in prepared.coords.items():
        cds = _create(coords, cname, enc, compress=enc.data.size > 4096)
        if enc.dims == (cname,) and cname in prepared.values.dims:
            cds.make_scale(cname)
    attach_scales(entry, prepared.name)


def attach_scales(entry: h5py.Group, name: str) -> None:
    """Label the dimensions of ``arrays/<name>`` and attach its dimension coordinates as scales.

    Also repairs the attachments of a group copied with ``h5py.Group.copy`` (which cannot carry the object
    references dimension scales use): stale attachment lists are dropped and rebuilt.
    """
    ds = entry["arrays"][name]
    coords = entry["coords"][name] if "coords" in entry and name in entry["coords"] else {}
    if "DIMENSION_LIST" in ds.attrs:
        del ds.attrs["DIMENSION_LIST"]
    for cds in coords.values():
        if "REFERENCE_LIST" in cds.attrs:
            del cds.attrs["REFERENCE_LIST"]
    for i, dim in enumerate(str(d) for d in ds.attrs["dims"]):
        ds.dims[i].label = dim
        cds = coords.get(dim)
        if cds is not None and h5py.h5ds.is_scale(cds.id):
            ds.dims[i].attach_scale(cds)


def _decode(ds: h5py.Dataset) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
    guard_size(ds)
    str_dtype = ds.attrs.get("str_dtype", "")
    if str_dtype or ds.dtype.kind == "O":
        raw = ds.asstr()[()]
        data = np.array(raw, dtype=object) if str_dtype == "O" else np.array(raw, dtype=str)
    else:
        data = np.asarray(ds[()])
    dims = tuple(str(d) for d in ds.attrs["dims"])
    attrs = json.loads(ds.attrs.get("attrs", "{}"))
    return data, dims, attrs


def _digest_part(digest: Digest, ds: h5py.Dataset, decoded: tuple[np.ndarray, tuple[str, ...], dict[str, Any]]
                 ) -> None:
    digest.array(decoded[0]).text(json.dumps(decoded[1])).text(ds.attrs.get("attrs", "{}"))
    digest.text(ds.attrs.get("str_dtype", ""))


def array_digest(entry: h5py.Group, name: str) -> tuple[Digest, Any, dict[str, Any]]:
    """The checksum of ``arrays/<name>`` with its coordinates, and the decoded parts."""
    values = _decode(entry["arrays"][name])
    digest = Digest("array").text(name)
    _digest_part(digest, entry["arrays"][name], values)
    coords = {}
    if "coords" in entry and name in entry["coords"]:
        for cname in sorted(entry["coords"][name]):
            cds = entry["coords"][name][cname]
            coords[cname] = _decode(cds)
            _digest_part(digest.text(cname), cds, coords[cname])
    return digest, values, coords


def read_array_group(entry: h5py.Group, name: str, verify: Any = None) -> Any:
    """Rebuild the ``xarray.DataArray`` stored as ``name`` in one entry (dims, coords and attrs restored).

    ``verify`` (a :class:`probe.store.checksum.Verifier`) checks the array's checksum first."""
    import xarray as xr

    digest, (data, dims, attrs), coords = array_digest(entry, name)
    if verify is not None:
        verify(entry["arrays"][name], digest)
    try:
        variables = {c: xr.Variable(cdims, cdata, attrs=cattrs) for c, (cdata, cdims, cattrs) in coords.items()}
        return xr.DataArray(data, dims=dims, coords=variables, name=name, attrs=attrs)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"array {name!r} does not fit its dims/coords: {exc}") from None
