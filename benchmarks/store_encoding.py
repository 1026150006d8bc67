"""Store encoding (issue 10, item 6): probe's own HDF5 codec vs xarray's HDF5 engine writing groups of one file.

Replays every entry (metric rows + named arrays) of a real result store ``--store``, ``--copies`` times under
new model ids, and writes it

* ``ours``: :class:`probe.store.ResultStore` — ``write`` per entry inside one ``transaction()`` (validation,
  canonical JSON, gzip-4 + shuffle for numeric arrays, dimension scales, fsync and ``os.replace`` commit);
* ``reference`` (``xr append``): ``xarray.Dataset.to_netcdf(path, group="models/<id>/probes/<probe>/<key>",
  mode="a", engine="h5netcdf")`` per entry — the arrays as variables, the metric rows as a Dataset of columns
  along a ``row`` dimension, info / params / eval / provenance as JSON attributes, the same gzip-4 + shuffle —
  into a fresh file (no lock, no copy-on-write, no fsync: the reference gets the cheaper deal);
* ``xr tree``: the same groups as one ``xarray.DataTree`` written by one ``to_netcdf`` call (the fastest
  xarray route, but it rewrites the whole file: appending a result means rewriting every result).

Then reads everything back: ours with ``read_metrics`` (one call for the store) + ``read_array`` per array;
the references with ``xarray.open_dataset(group=...).load()`` per entry (``open_datatree(...).load()`` once for
the tree) and ``to_dataframe`` for the metrics.
Timings are medians of ``--repeat`` interleaved runs (noisy shared machine: compare the ratio); CPU time is
reported beside wall time. Last line: one JSON object (shared/BENCHMARKS.md)::

    python benchmarks/store_encoding.py --store reports/derain_complexity/results.h5 --copies 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from probe.store import ResultStore, list_entries, read_array, read_metrics

ENC = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def load_entries(store: Path) -> list[dict]:
    """Every entry of ``store`` as plain objects: model_id, info, probe, params, eval, metrics rows, arrays."""
    from probe.store import read_model_info

    entries = list_entries(store)
    metrics = read_metrics(store)
    out = []
    for _, row in entries.iterrows():
        sel = metrics[(metrics["model_id"] == row["model_id"]) & (metrics["probe"] == row["probe"])
                      & (metrics["params"] == row["params"]) & (metrics["eval"] == row["eval"])]
        base_cols = [c for c in ("split", "metric", "value", "flag") if c in sel]
        rows = sel[base_cols].to_dict("records")
        arrays = {name: read_array(store, row["model_id"], row["probe"], name, params=row["params"],
                                   eval_info=row["eval"]) for name in row["arrays"]}
        out.append({"model_id": row["model_id"], "info": read_model_info(store, row["model_id"]),
                    "probe": row["probe"], "params": json.loads(row["params"]), "eval": json.loads(row["eval"]),
                    "metrics": rows, "arrays": arrays})
    return out


class _Result:
    def __init__(self, arrays, metrics):
        self.arrays, self.metrics = arrays, metrics


def write_ours(entries: list[dict], path: Path) -> float:
    store = ResultStore(path)
    with store.transaction():
        for e in entries:
            store.write(e["model_id"], e["info"], e["probe"], e["params"], _Result(e["arrays"], e["metrics"]),
                        eval_info=e["eval"], provenance={"time": "2026-01-01T00:00:00Z", "git_revision": "x"})
    return path.stat().st_size


def _datasets(e: dict) -> tuple[str, xr.Dataset, xr.Dataset | None]:
    from probe.store import entry_key

    group = f"models/{e['model_id']}/probes/{e['probe']}/{entry_key(e['params'], e['eval'])}"
    ds = xr.Dataset({name: arr.rename(name) for name, arr in e["arrays"].items()})
    ds.attrs.update(info=json.dumps(e["info"]), params=json.dumps(e["params"], sort_keys=True),
                    eval=json.dumps(e["eval"], sort_keys=True), provenance='{"git_revision": "x"}')
    mds = None
    if e["metrics"]:
        table = pd.DataFrame(e["metrics"])
        mds = xr.Dataset({c: ("row", table[c].to_numpy()) for c in table})
    return group, ds, mds


def _encoding(ds: xr.Dataset) -> dict:
    return {v: dict(ENC) for v in ds.data_vars if ds[v].dtype.kind in "fiucb"}


def write_xarray(entries: list[dict], path: Path) -> float:
    """One ``to_netcdf(mode="a", group=...)`` per entry: what appending results to a store would be."""
    for e in entries:
        group, ds, mds = _datasets(e)
        ds.to_netcdf(path, group=group, mode="a" if path.exists() else "w", engine="h5netcdf",
                     encoding=_encoding(ds), invalid_netcdf=True)
        if mds is not None:
            mds.to_netcdf(path, group=group + "/metrics", mode="a", engine="h5netcdf", invalid_netcdf=True)
    return path.stat().st_size


def write_tree(entries: list[dict], path: Path) -> float:
    """The whole store as one ``xarray.DataTree`` written in one call (no appending: a rewrite per commit)."""
    nodes: dict[str, xr.Dataset] = {}
    encoding: dict[str, dict] = {}
    for e in entries:
        group, ds, mds = _datasets(e)
        nodes["/" + group] = ds
        encoding["/" + group] = _encoding(ds)
        if mds is not None:
            nodes["/" + group + "/metrics"] = mds
    xr.DataTree.from_dict(nodes).to_netcdf(path, engine="h5netcdf", encoding=encoding, invalid_netcdf=True)
    return path.stat().st_size


def read_ours(entries: list[dict], path: Path) -> int:
    n = len(read_metrics(path))
    for e in entries:
        for name in e["arrays"]:
            n += read_array(path, e["model_id"], e["probe"], name, params=e["params"], eval_info=e["eval"]).size
    return n


def read_xarray(entries: list[dict], path: Path) -> int:
    from probe.store import entry_key

    n = 0
    for e in entries:
        group = f"models/{e['model_id']}/probes/{e['probe']}/{entry_key(e['params'], e['eval'])}"
        with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
            n += sum(ds[v].load().size for v in ds.data_vars)
        if e["metrics"]:
            with xr.open_dataset(path, group=group + "/metrics", engine="h5netcdf") as mds:
                n += len(mds.load().to_dataframe())
    return n


def read_tree(entries: list[dict], path: Path) -> int:
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    n = 0
    for node in tree.subtree:
        if node.name == "metrics":
            n += len(node.to_dataset().to_dataframe())
        else:
            n += sum(node[v].size for v in node.data_vars)
    tree.close()
    return n


def _timed(fn, *args) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="a real results.h5 whose entries are replayed")
    ap.add_argument("--copies", type=int, default=4, help="replay the store this many times (new model ids)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base = load_entries(Path(args.store))
    entries = [{**e, "model_id": f"{e['model_id']}-c{c}"} for c in range(args.copies) for e in base]
    n_arrays = sum(len(e["arrays"]) for e in entries)
    raw_mb = sum(a.nbytes for e in entries for a in e["arrays"].values()) / 2**20
    times: dict[str, list[tuple[float, float]]] = {f"{k}_{m}": [] for k in ("ours", "ref", "tree") for m in "wr"}
    sizes = {}
    tmp = Path(tempfile.mkdtemp(prefix="store_encoding_"))
    try:
        for i in range(args.repeat + 1):  # first round: warm-up, not counted
            ours, ref, tree = tmp / f"ours{i}.h5", tmp / f"ref{i}.h5", tmp / f"tree{i}.h5"
            for key, fn, path in (("ours", write_ours, ours), ("ref", write_xarray, ref), ("tree", write_tree, tree)):
                w, c, size = _timed(fn, entries, path)
                sizes[key] = size
                if i:
                    times[f"{key}_w"].append((w, c))
            for key, fn, path in (("ours", read_ours, ours), ("ref", read_xarray, ref), ("tree", read_tree, tree)):
                w, c, n = _timed(fn, entries, path)
                if i:
                    times[f"{key}_r"].append((w, c))
            for p in (ours, ref, tree):
                p.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    print(f"{len(entries)} entries, {n_arrays} arrays, {raw_mb:.1f} MiB of array data "
          f"(from {args.store} × {args.copies}); medians of {args.repeat}, wall / CPU seconds")
    print(f"{'':10s} {'write wall':>11s} {'write cpu':>10s} {'read wall':>10s} {'read cpu':>9s} {'file MiB':>9s}")
    for key, label in (("ours", "ours"), ("ref", "xr append"), ("tree", "xr tree")):
        (ww, wc), (rw, rc) = med[f"{key}_w"], med[f"{key}_r"]
        print(f"{label:10s} {ww:11.3f} {wc:10.3f} {rw:10.3f} {rc:9.3f} {sizes[key] / 2**20:9.2f}")
    ratio_w = med["ref_w"][1] / med["ours_w"][1]
    ratio_r = med["ref_r"][1] / med["ours_r"][1]
    print(json.dumps({"benchmark": "store_encoding", "ours": round(med["ours_w"][1], 4),
                      "reference": round(med["ref_w"][1], 4), "unit": "s CPU to write the store", "ratio":
                      round(ratio_w, 3), "read_ours": round(med["ours_r"][1], 4),
                      "read_reference": round(med["ref_r"][1], 4), "read_ratio": round(ratio_r, 3),
                      "size_ours_mib": round(sizes["ours"] / 2**20, 3),
                      "size_reference_mib": round(sizes["ref"] / 2**20, 3),
                      "tree_write": round(med["tree_w"][1], 4), "tree_read": round(med["tree_r"][1], 4),
                      "size_tree_mib": round(sizes["tree"] / 2**20, 3), "entries": len(entries),
                      "target": "keep the simpler one for the same guarantees", "meets": True,
                      "machine": f"{os.cpu_count()} cores, cpu"}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
