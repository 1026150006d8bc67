"""Commit cost on a store of many entries: ours (one segment per commit, binary-counter merges) vs a full-rewrite
copy-on-write reference (copy results.h5, append the entry, fsync, os.replace: probe's writer before schema 2).

Both stores hold the same ``--entries`` results (small metric tables and one 2×16 array each, like a grid's
``generalization`` entries); then ``--commits`` more results are committed one at a time, interleaved
ours/reference. Reported: the median commit (write + commit, fsync included) and the mean over all commits
(ours: merges included, i.e. the amortised cost), and the store size.

    python benchmarks/store_commit.py            # 2000 entries, 40 commits
    python benchmarks/store_commit.py --quick    # 300 entries, 15 commits
    python benchmarks/store_commit.py --entries 400 --array-kib 256 --commits 12   # a 100 MiB store
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.store import ResultStore  # noqa: E402
from probe.store.entry import create_store, prepare_entry, write_entry  # noqa: E402

PROV = {"git_revision": "bench", "time": "2026-01-01T00:00:00+00:00", "versions": {}}


ARRAY_KIB = 0  # set by --array-kib: an extra incompressible array per entry (attribution maps, examples)


def result(i: int) -> SimpleNamespace:
    arr = xr.DataArray(np.full((2, 16), float(i)), dims=("split", "image"), coords={"split": ["id", "ood"]})
    arrays = {"psnr": arr}
    if ARRAY_KIB:
        arrays["maps"] = xr.DataArray(np.random.default_rng(i).random(ARRAY_KIB * 128), dims=("pixel",))
    metrics = [{"split": s, "metric": m, "value": i + k} for k, (s, m) in
               enumerate((s, m) for s in ("id", "ood") for m in ("psnr", "ssim", "lpips"))]
    return SimpleNamespace(arrays=arrays, metrics=metrics)


def reference_commit(path: Path, i: int) -> None:
    """The copy-on-write reference: copy the whole file, append one entry, fsync, replace (lock omitted)."""
    entry = prepare_entry(f"m{i}", {"family": "resnet", "i": i}, "generalization", {"i": i}, result(i), {}, "",
                          PROV, None)
    tmp = path.with_name(f".{path.name}.ref.tmp")
    if path.exists():
        shutil.copyfile(path, tmp)
        handle = h5py.File(tmp, "a", locking=False)
    else:
        handle = create_store(tmp)
    with handle:
        group = handle["models"].require_group(entry.model_id)
        group.attrs["sha256"] = ""
        probes = group.require_group("probes").require_group(entry.probe)
        write_entry(probes.create_group(entry.key), entry)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ours_write(store: ResultStore, i: int) -> None:
    store.write(f"m{i}", {"family": "resnet", "i": i}, "generalization", {"i": i}, result(i), provenance=PROV)


def ours_commit(store: ResultStore, i: int) -> None:
    """What ``probe measure`` does per model inside its incremental transaction: look up, write, commit."""
    assert not store.has(f"m{i}", "generalization", {"i": i})
    ours_write(store, i)
    store.commit()


def size_of(path: Path) -> int:
    total = path.stat().st_size
    folder = path.with_name(path.name + ".d")
    if folder.is_dir():
        total += sum(p.stat().st_size for p in folder.iterdir())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--array-kib", type=int, default=0, help="an extra random array of this size per entry")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    global ARRAY_KIB
    ARRAY_KIB = args.array_kib
    if args.quick:
        args.entries, args.commits = 300, 15
    root = Path(tempfile.mkdtemp(prefix="store_commit."))
    try:
        ours_path, ref_path = root / "ours" / "results.h5", root / "ref" / "results.h5"
        ours_path.parent.mkdir()
        ref_path.parent.mkdir()
        store = ResultStore(ours_path)
        with store.transaction():  # both stores start with the same entries, written in one go
            for i in range(args.entries):
                ours_write(store, i)
        store.compact()
        shutil.copyfile(ours_path, ref_path)  # same bytes: schema 2 is a superset of what the reference appends
        ours_t, ref_t, alone_t = [], [], []
        with store.transaction(keep_on_error=True):  # the measuring pattern: one long incremental transaction
            for k in range(args.commits):
                i = args.entries + k
                t0 = time.perf_counter()
                ours_commit(store, i)
                ours_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reference_commit(ref_path, i)
                ref_t.append(time.perf_counter() - t0)
        for k in range(min(5, args.commits)):  # a lone write() outside a transaction (opens the store first)
            i = args.entries + args.commits + k
            t0 = time.perf_counter()
            ours_write(store, i)
            alone_t.append(time.perf_counter() - t0)
            reference_commit(ref_path, i)
        ours_med, ref_med = statistics.median(ours_t), statistics.median(ref_t)
        ours_mean, ref_mean = statistics.fmean(ours_t), statistics.fmean(ref_t)
        n_segments = len(list(ours_path.with_name("results.h5.d").glob("*.h5")))
        print(f"store of {args.entries} entries, {args.commits} single-entry commits (wall seconds per commit)")
        print(f"{'':32} {'median':>10} {'mean (amortised)':>18} {'store MiB':>10}")
        print(f"{'ours: segment per commit':32} {ours_med:10.4f} {ours_mean:18.4f} {size_of(ours_path) / 2**20:10.2f}"
              f"   ({n_segments} segment files at the end)")
        print(f"{'ours: lone write() (own transaction)':32} {statistics.median(alone_t):10.4f}")
        ref_mib = size_of(ref_path) / 2**20
        print(f"{'reference: full copy-on-write':32} {ref_med:10.4f} {ref_mean:18.4f} {ref_mib:10.2f}")
        print(json.dumps({"benchmark": "store_commit", "ours": round(ours_med, 5), "reference": round(ref_med, 5),
                          "unit": "s per single-entry commit (median)", "ratio": round(ref_med / ours_med, 2),
                          "ours_mean": round(ours_mean, 5), "reference_mean": round(ref_mean, 5),
                          "mean_ratio": round(ref_mean / ours_mean, 2), "entries": args.entries,
                          "commits": args.commits, "array_kib": args.array_kib,
                          "store_mib": round(size_of(ours_path) / 2**20, 2),
                          "segments": n_segments, "lone_write": round(statistics.median(alone_t), 5),
                          "machine": f"{os.cpu_count()} cores, cpu"}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
