"""Readers of result stores: tidy metrics, arrays with coordinates, the list of models and results.

Readers take no lock (a store is only ever replaced whole) and raise :class:`probe.errors.StoreError` naming
the file for anything missing, corrupt or of another schema::

    from probe.store import read_metrics, read_array
    df = read_metrics("reports/derain_complexity/results.h5")
    df[(df.probe == "generalization") & (df.metric == "psnr")].groupby(["n_backgrounds", "split"]).value.mean()
    psnr = read_array("reports/derain_complexity/results.h5", "resnet-n16-s0", "generalization", "psnr")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import StoreError
from probe.store.codec import read_array_group, read_metrics_group
from probe.store.schema import (
    attr_str,
    canonical,
    iter_entries,
    read_json,
    read_text,
    reading,
)

CORE_COLUMNS = ["model_id", "probe", "params", "eval", "split", "metric", "value"]
ENTRY_COLUMNS = ["model_id", "probe", "entry_key", "params", "eval", "sha256", "time", "git_revision",
                 "provenance", "n_metrics", "arrays"]


def _paths(path_or_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(path_or_paths, (str, Path)):
        return [Path(path_or_paths)]
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise StoreError("no result store given")
    return paths


def _is_handle(source: Any) -> bool:
    import h5py

    return isinstance(source, h5py.Group)


def _reading(source: Any) -> Any:
    """An open store handle as is (not closed after), else :func:`reading` of the path."""
    return nullcontext(source) if _is_handle(source) else reading(source)


def _info_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


def read_metrics(path_or_paths: str | Path | Iterable[str | Path]) -> Any:
    """A tidy ``pandas.DataFrame`` of every stored metric, one row per model × probe × split × metric (× extra
    keys such as ``layer``).

    Columns: ``model_id, probe, params`` (JSON), ``eval`` (JSON), ``split, metric, value``, then the metric
    rows' extra keys, then every top-level key of each model's info dict (``family, background,
    n_backgrounds, seed``, …; nested values as JSON text; a key that clashes with an earlier column is
    renamed ``model_<key>``). Several stores are concatenated::

        read_metrics(["reports/a/results.h5", "reports/b/results.h5"])

    An open store handle is read as is (:meth:`ResultStore.view` inside a transaction: what is written so far).
    """
    import pandas as pd

    frames = []
    extra_order: dict[str, None] = {}
    info_order: dict[str, None] = {}
    sources = [path_or_paths] if _is_handle(path_or_paths) else _paths(path_or_paths)
    for path in sources:
        with _reading(path) as handle:
            infos: dict[str, dict[str, Any]] = {}
            for model_id, probe, _key, entry in iter_entries(handle):
                if model_id not in infos:
                    info = read_json(handle["models"][model_id], "info", {}) or {}
                    infos[model_id] = {str(k): _info_value(v) for k, v in info.items()}
                columns = read_metrics_group(entry)
                n_rows = len(columns.get("value", ()))
                if not n_rows:
                    continue
                for name in columns:
                    if name not in CORE_COLUMNS:
                        extra_order.setdefault(name, None)
                for name in infos[model_id]:
                    info_order.setdefault(name, None)
                frame = {"model_id": model_id, "probe": probe, "params": read_text(entry["params"]),
                         "eval": read_text(entry["eval"]), **columns}
                frames.append((pd.DataFrame(frame, index=pd.RangeIndex(n_rows)), infos[model_id]))
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=float if name == "value" else object)
                             for name in CORE_COLUMNS})
    taken = set(CORE_COLUMNS) | set(extra_order)
    renamed = {k: (f"model_{k}" if k in taken else k) for k in info_order}
    parts = []
    for frame, info in frames:
        for key, value in info.items():
            frame[renamed[key]] = [value] * len(frame)
        parts.append(frame)
    df = pd.concat(parts, ignore_index=True, sort=False)
    return df[CORE_COLUMNS + list(extra_order) + [renamed[k] for k in info_order]]


def _select_entry(handle: Any, path: Path, model_id: str, probe: str, params: Any, eval_info: Any) -> Any:
    models = handle["models"]
    if model_id not in models:
        raise StoreError(f"results store {path}: no model {model_id!r}; models: "
                         f"{', '.join(sorted(models)) or 'none'}")
    probes = models[model_id].get("probes", {})
    if probe not in probes:
        raise StoreError(f"results store {path}: no {probe!r} results for model {model_id!r}; probes: "
                         f"{', '.join(sorted(probes)) or 'none'}")
    candidates = [probes[probe][key] for key in sorted(probes[probe])]
    if params is not None:
        wanted = canonical(params, "params")
        candidates = [e for e in candidates if read_text(e["params"]) == wanted]
    if eval_info is not None:
        wanted_eval = canonical(eval_info, "eval_info")
        candidates = [e for e in candidates if read_text(e["eval"]) == wanted_eval]
    if len(candidates) == 1:
        return candidates[0]
    choices = "; ".join(f"params={read_text(e['params'])} eval={read_text(e['eval'])}"
                        for e in probes[probe].values())
    what = "no" if not candidates else f"{len(candidates)}"
    raise StoreError(f"results store {path}: {what} {probe!r} results of model {model_id!r} match; "
                     f"pass params/eval_info, choices: {choices}")


def read_array(path: str | Path, model_id: str, probe: str, name: str, params: Any = None,
               eval_info: Mapping[str, Any] | None = None) -> Any:
    """One stored array as an ``xarray.DataArray`` with its dims, coordinates and attrs.

    ``params`` / ``eval_info`` (dicts or JSON) pick the result when the probe ran with several settings;
    without them the model's only result of ``probe`` is used::

        read_array("reports/demo/results.h5", "resnet-n16-s0", "generalization", "psnr").sel(split="ood")
    """
    path = Path(path)
    with reading(path) as handle:
        entry = _select_entry(handle, path, model_id, probe, params, eval_info)
        arrays = entry.get("arrays", {})
        if name not in arrays:
            raise StoreError(f"results store {path}: model {model_id!r} probe {probe!r} has no array {name!r}; "
                             f"arrays: {', '.join(sorted(arrays)) or 'none'}")
        return read_array_group(entry, name)


def list_models(path: str | Path) -> list[str]:
    """The model ids in a store, sorted: ``list_models("reports/demo/results.h5")``."""
    with reading(path) as handle:
        return sorted(handle["models"])


def read_model_info(path: str | Path, model_id: str) -> dict[str, Any]:
    """The info dict written with ``model_id``, plus its ``sha256`` and ``path`` attributes (``path``: a store
    file, or an open store handle)."""
    with _reading(path) as handle:
        if model_id not in handle["models"]:
            raise StoreError(f"results store {path}: no model {model_id!r}")
        group = handle["models"][model_id]
        info = read_json(group, "info", {}) or {}
        return {**info, "sha256": attr_str(group, "sha256"), "path": attr_str(group, "path")}


def entries_frame(handle: Any) -> Any:
    """One row per stored result of an open store (``None`` → empty frame); see ``ResultStore.entries``."""
    import pandas as pd

    rows = []
    if handle is not None:
        for model_id, probe, key, entry in iter_entries(handle):
            metrics = entry.get("metrics")
            rows.append({
                "model_id": model_id, "probe": probe, "entry_key": key,
                "params": read_text(entry["params"]), "eval": read_text(entry["eval"]),
                "sha256": attr_str(entry, "sha256"), "time": attr_str(entry, "time"),
                "git_revision": attr_str(entry, "git_revision"),
                "provenance": read_text(entry["provenance"]) if "provenance" in entry else "{}",
                "n_metrics": int(np.asarray(metrics.attrs.get("n_rows", 0))) if metrics is not None else 0,
                "arrays": sorted(entry.get("arrays", {})),
            })
    return pd.DataFrame(rows, columns=ENTRY_COLUMNS)


def list_entries(path: str | Path) -> Any:
    """``ResultStore(path).entries()`` for an existing store (StoreError if it is missing or unreadable)."""
    with reading(path) as handle:
        return entries_frame(handle)
