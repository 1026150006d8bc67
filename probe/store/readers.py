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
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import StoreError
from probe.store.codec import read_array_group, read_metrics_group
from probe.store.schema import canonical
from probe.store.view import StoreView, open_view

CORE_COLUMNS = ["model_id", "probe", "params", "eval", "split", "metric", "value"]
ENTRY_COLUMNS = ["model_id", "probe", "entry_key", "params", "eval", "sha256", "time", "git_revision",
                 "provenance", "n_metrics", "arrays", "study", "verified"]


def _paths(path_or_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(path_or_paths, (str, Path)):
        return [Path(path_or_paths)]
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise StoreError("no result store given")
    return paths


def _info_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


def read_metrics(path_or_paths: str | Path | Iterable[str | Path], study: str | None = None) -> Any:
    """A tidy ``pandas.DataFrame`` of every stored metric, one row per model × probe × split × metric (× extra
    keys such as ``layer``).

    Columns: ``model_id, probe, params`` (JSON), ``eval`` (JSON), ``split, metric, value``, then the metric
    rows' extra keys, then ``study`` (only when some model was written for a study), then every top-level key
    of each model's info dict (``family, background, n_backgrounds, seed``, …; nested values as JSON text; a
    key that clashes with an earlier column is renamed ``model_<key>``). ``study``: only that study's models.
    Several stores are concatenated::

        read_metrics(["reports/a/results.h5", "reports/b/results.h5"])

    Every part read is checked against its checksum: damage is one :class:`StoreError` line naming the store
    and the entry (stores of schema 1 have no checksums and are read unverified, see :func:`store_status`).
    """
    from contextlib import ExitStack

    with ExitStack() as stack:
        views = [stack.enter_context(open_view(p)) for p in _paths(path_or_paths)]
        return metrics_frame(views, study)


def metrics_frame(views: list[StoreView], study: str | None = None) -> Any:
    """:func:`read_metrics` of open views."""
    import pandas as pd

    frames = []
    extra_order: dict[str, None] = {}
    info_order: dict[str, None] = {}
    with_study = any(s for view in views for s in view.studies())
    for view in views:
        infos: dict[tuple[str, str], dict[str, Any]] = {}
        for s, model_id, probe, key, entry in view.iter_entries(study):
            if (s, model_id) not in infos:
                info = view.info(s, model_id)
                info.pop("sha256", None), info.pop("path", None)
                infos[(s, model_id)] = {str(k): _info_value(v) for k, v in info.items()}
            columns = read_metrics_group(entry, view.verifier((s, model_id, probe, key)))
            n_rows = len(columns.get("value", ()))
            if not n_rows:
                continue
            texts = view.texts((s, model_id, probe, key))
            for name in columns:
                if name not in CORE_COLUMNS:
                    extra_order.setdefault(name, None)
            for name in infos[(s, model_id)]:
                info_order.setdefault(name, None)
            frame = {"model_id": model_id, "probe": probe, "params": texts["params"], "eval": texts["eval"],
                     **columns}
            frames.append((pd.DataFrame(frame, index=pd.RangeIndex(n_rows)), s, infos[(s, model_id)]))
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=float if name == "value" else object)
                             for name in CORE_COLUMNS + (["study"] if with_study else [])})
    taken = set(CORE_COLUMNS) | set(extra_order) | ({"study"} if with_study else set())
    renamed = {k: (f"model_{k}" if k in taken else k) for k in info_order}
    parts = []
    for frame, s, info in frames:
        if with_study:
            frame["study"] = s
        for key, value in info.items():
            frame[renamed[key]] = [value] * len(frame)
        parts.append(frame)
    df = pd.concat(parts, ignore_index=True, sort=False)
    return df[CORE_COLUMNS + list(extra_order) + (["study"] if with_study else [])
              + [renamed[k] for k in info_order]]


def _select_entry(view: StoreView, model_id: str, probe: str, params: Any, eval_info: Any,
                  study: str | None) -> tuple[str, str, str, str]:
    path = view.path
    s, model_id = view.resolve(model_id, study)
    keys = sorted(k for k in view.entries if k[:2] == (s, model_id) and k[2] == probe)
    if not keys:
        probes = sorted({k[2] for k in view.entries if k[:2] == (s, model_id)})
        raise StoreError(f"results store {path}: no {probe!r} results for model {model_id!r}; probes: "
                         f"{', '.join(probes) or 'none'}")
    texts = {k: view.texts(k) for k in keys}
    candidates = keys
    if params is not None:
        wanted = canonical(params, "params")
        candidates = [k for k in candidates if texts[k]["params"] == wanted]
    if eval_info is not None:
        wanted_eval = canonical(eval_info, "eval_info")
        candidates = [k for k in candidates if texts[k]["eval"] == wanted_eval]
    if len(candidates) == 1:
        return candidates[0]
    choices = "; ".join(f"params={texts[k]['params']} eval={texts[k]['eval']}" for k in keys)
    what = "no" if not candidates else f"{len(candidates)}"
    raise StoreError(f"results store {path}: {what} {probe!r} results of model {model_id!r} match; "
                     f"pass params/eval_info, choices: {choices}")


def read_array(path: str | Path, model_id: str, probe: str, name: str, params: Any = None,
               eval_info: Mapping[str, Any] | None = None, study: str | None = None) -> Any:
    """One stored array as an ``xarray.DataArray`` with its dims, coordinates and attrs (checksum verified).

    ``params`` / ``eval_info`` (dicts or JSON) pick the result when the probe ran with several settings;
    without them the model's only result of ``probe`` is used; ``study`` picks the model when several studies
    share the store and the id::

        read_array("reports/demo/results.h5", "resnet-n16-s0", "generalization", "psnr").sel(split="ood")
    """
    path = Path(path)
    with open_view(path) as view:
        key = _select_entry(view, model_id, probe, params, eval_info, study)
        entry = view.group(key)
        arrays = entry.get("arrays", {})
        if name not in arrays:
            raise StoreError(f"results store {path}: model {model_id!r} probe {probe!r} has no array {name!r}; "
                             f"arrays: {', '.join(sorted(arrays)) or 'none'}")
        return read_array_group(entry, name, view.verifier(key))


def list_models(path: str | Path) -> list[str]:
    """The model ids in a store, sorted (each once, whatever its study): ``list_models("reports/demo/results.h5")``."""
    with open_view(path) as view:
        return sorted({m for _s, m in view.models})


def read_model_info(path: str | Path, model_id: str, study: str | None = None) -> dict[str, Any]:
    """The info dict written with ``model_id``, plus its ``sha256`` and ``path`` attributes."""
    with open_view(path) as view:
        return view.info(*view.resolve(model_id, study))


def entries_frame(view: StoreView | None) -> Any:
    """One row per stored result of an open view (``None`` → empty frame); see ``ResultStore.entries``."""
    import pandas as pd

    rows = []
    if view is not None:
        for s, model_id, probe, key, entry in view.iter_entries():
            texts = view.texts((s, model_id, probe, key))
            metrics = entry.get("metrics")
            rows.append({
                "model_id": model_id, "probe": probe, "entry_key": key,
                "params": texts["params"], "eval": texts["eval"], "sha256": texts["sha256"],
                "time": texts["time"], "git_revision": texts["git_revision"], "provenance": texts["provenance"],
                "n_metrics": int(np.asarray(metrics.attrs.get("n_rows", 0))) if metrics is not None else 0,
                "arrays": sorted(entry.get("arrays", {})), "study": s,
                "verified": entry.name not in view.verifier((s, model_id, probe, key)).unverified,
            })
    return pd.DataFrame(rows, columns=ENTRY_COLUMNS)


def list_entries(path: str | Path) -> Any:
    """``ResultStore(path).entries()`` for an existing store (StoreError if it is missing or unreadable)."""
    with open_view(path) as view:
        return entries_frame(view)


def store_status(path: str | Path) -> dict[str, Any]:
    """Whether a store's contents are verified: ``{"schema_version", "entries", "unverified"}`` — ``unverified``
    counts results without checksums (written by a probe before schema 2); every other part was checked."""
    with open_view(path) as view:
        for s, model_id, probe, key, entry in view.iter_entries():
            k = (s, model_id, probe, key)
            view.texts(k)
            read_metrics_group(entry, view.verifier(k))
        unverified = sum(1 for k, (_h, path, verify) in view.entries.items() if f"/{path}" in verify.unverified)
        version = int(np.asarray(view.files[0][0].attrs["schema_version"]).item()) if view.files else 0
        return {"schema_version": version, "entries": len(view.entries), "unverified": unverified}
