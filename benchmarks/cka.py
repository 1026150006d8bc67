"""Linear CKA on large dense feature maps: probe's blockwise estimator vs Kornblith et al.'s plain formulas.

Data: n samples of 64-channel 32×32 post-ReLU maps, flattened per image (the "image" sample convention,
d = 65 536), float32; y shares part of x's signal so the CKA is well inside (0, 1).

* ``reference``: Kornblith et al.'s published numpy code (google-research/representation_similarity):
  float64 features, ``gram = x @ x.T`` (numpy uses syrk for it), ``center_gram`` (O(n²) centring, with the
  ``unbiased`` variant = Nguyen et al.'s HSIC₁), CKA = ⟨K̄, L̄⟩ / (‖K̄‖‖L̄‖) — full n × n Gram matrices.
* ``ours``: :func:`probe.methods.cka.cka_estimates` — centred float32 products in blocks of 2048 rows ×
  8192 columns, summed in float64, consumed block by block (upper triangle only): no n × n matrix and no
  float64 copy of the features.

Both compute the unbiased **and** the biased CKA per call (one pass over the data each). Variants are
interleaved (order alternating), one warm-up, median of the repetitions. Peak memory: ``tracemalloc`` (both
sides allocate their large buffers through numpy) and the peak RSS increase (VmHWM, reset per call through
/proc/self/clear_refs). At n = 8192 the reference would need ~11 GB (float64 copies of x and y: 8.6 GB, plus
four 0.5 GB n × n matrices) and ~16× its n = 2048 time: it is not run, its time and memory are *estimated*
(marked so), and ours runs once (nothing to interleave with). Last line: the JSON summary.

    python benchmarks/cka.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from probe.methods.cka import cka_estimates  # noqa: E402

C, H, W = 64, 32, 32
D = C * H * W
TARGET_RATIO = 10.0
TARGET_DIFF = 1e-6


# ----------------------------------------------------------------------------------------------- reference

def center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Kornblith et al.'s ``center_gram`` (representation_similarity/demo), verbatim in substance."""
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def reference(x32: np.ndarray, y32: np.ndarray) -> dict[str, float]:
    x = x32.astype(np.float64)
    gram_x = x @ x.T
    del x
    y = y32.astype(np.float64)
    gram_y = y @ y.T
    del y
    out = {}
    for estimator in ("unbiased", "biased"):
        kx = center_gram(gram_x, unbiased=estimator == "unbiased")
        ky = center_gram(gram_y, unbiased=estimator == "unbiased")
        out[estimator] = float(kx.ravel().dot(ky.ravel()) / (np.linalg.norm(kx) * np.linalg.norm(ky)))
    return out


def ours(x32: np.ndarray, y32: np.ndarray) -> dict[str, float]:
    result = cka_estimates(torch.from_numpy(x32), torch.from_numpy(y32))
    return {k: v.value for k, v in result.items()}


# ----------------------------------------------------------------------------------------------- harness

def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Post-ReLU x and a y correlated with it, float32 (n, 65536), built in row chunks (bounded temporaries)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, D), dtype=np.float32)
    y = np.empty((n, D), dtype=np.float32)
    for start in range(0, n, 512):
        raw = rng.standard_normal((min(512, n - start), D), dtype=np.float32)
        noise = rng.standard_normal(raw.shape, dtype=np.float32)
        np.maximum(raw + 0.7 * noise, 0, out=y[start:start + len(raw)])
        np.maximum(raw, 0, out=x[start:start + len(raw)])
    return x, y


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024  # MiB
    return float("nan")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(fn, x, y) -> dict:
    gc.collect()
    can_reset = _reset_peak()
    rss0 = _status("VmRSS:")
    tracemalloc.start()
    t0 = time.perf_counter()
    values = fn(x, y)
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status("VmHWM:") - rss0 if can_reset else float("nan")
    return {"s": seconds, "values": values, "traced_mb": traced_peak / 2**20, "rss_mb": rss_peak}


def run_size(n: int, reps: int, with_reference: bool) -> dict:
    x, y = make_data(n)
    variants = {"ours": ours, "reference": reference} if with_reference else {"ours": ours}
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    total = reps + 1 if with_reference else 1  # one warm-up, then interleaved repetitions
    for rep in range(total):
        order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
        for name in order:
            m = measure(variants[name], x, y)
            if rep > 0 or not with_reference:
                runs[name].append(m)
    row = {"n": n, "d": D, "reps": len(runs["ours"])}
    for name, ms in runs.items():
        row[f"{name}_s"] = statistics.median(m["s"] for m in ms)
        row[f"{name}_traced_mb"] = max(m["traced_mb"] for m in ms)
        row[f"{name}_rss_mb"] = max(m["rss_mb"] for m in ms)
        row[f"{name}_values"] = ms[-1]["values"]
    if with_reference:
        row["max_abs_diff"] = max(abs(row["ours_values"][e] - row["reference_values"][e])
                                  for e in ("unbiased", "biased"))
        row["ratio"] = row["reference_s"] / row["ours_s"]
    del x, y
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 256 and 512 only (seconds)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sizes = [(256, True), (512, True)] if args.quick else [(512, True), (2048, True), (8192, False)]
    rows = []
    for n, with_ref in sizes:
        print(f"n = {n} ...", file=sys.stderr, flush=True)
        rows.append(run_size(n, args.reps, with_ref))
    measured = [r for r in rows if "ratio" in r]
    head = measured[-1]
    for r in rows:
        if "ratio" not in r:  # estimate the reference from the largest measured size (time ~ n², memory exact)
            scale = (r["n"] / head["n"]) ** 2
            r["reference_s"] = head["reference_s"] * scale
            r["reference_estimated"] = True
            r["reference_rss_mb"] = (2 * r["n"] * D * 8 + 4 * r["n"] ** 2 * 8) / 2**20
            r["reference_traced_mb"] = r["reference_rss_mb"]
    print(f"linear CKA, unbiased + biased per call, x and y: n x {D} float32 (64 ch x 32 x 32), "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'n':>6} {'ours s':>9} {'ref s':>10} {'ratio':>7} {'max|diff|':>10} {'ours MB':>9} {'ref MB':>10}"
          f" {'CKA unb.':>9} {'CKA bias':>9}")
    for r in rows:
        est = "~" if r.get("reference_estimated") else " "
        ratio = f"{r['reference_s'] / r['ours_s']:6.1f}{est}"
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "(skipped)"
        print(f"{r['n']:>6} {r['ours_s']:9.2f} {est}{r['reference_s']:9.2f} {ratio:>7} {diff:>10} "
              f"{max(r['ours_traced_mb'], r['ours_rss_mb']):9.0f} "
              f"{est}{max(r['reference_traced_mb'], r['reference_rss_mb']):9.0f} "
              f"{r['ours_values']['unbiased']:9.6f} {r['ours_values']['biased']:9.6f}")
    print("~ = reference estimated, not run (time scaled by n^2 from the largest measured n; memory from its "
          "buffer sizes). MB = peak of tracemalloc and RSS increase during the call.")
    max_diff = max(r["max_abs_diff"] for r in measured)
    bounded = None
    big = [r for r in rows if r.get("reference_estimated")]
    if big:
        ours_peak = max(big[-1]["ours_traced_mb"], big[-1]["ours_rss_mb"])
        base_peak = max(head["ours_traced_mb"], head["ours_rss_mb"])
        # bounded: 16x the Gram entries, yet peak memory grows by less than 2x and stays << the reference
        bounded = bool(ours_peak < 2 * base_peak + 64 and ours_peak < 0.05 * big[-1]["reference_rss_mb"])
    meets = bool(head["ratio"] >= TARGET_RATIO and max_diff <= TARGET_DIFF and (bounded is not False))
    summary = {
        "benchmark": "cka", "ours": round(head["ours_s"], 4), "reference": round(head["reference_s"], 4),
        "unit": "s", "ratio": round(head["ratio"], 2), "target": TARGET_RATIO, "meets": meets,
        "machine": f"{os.cpu_count()} cores, cpu", "n": head["n"], "d": D,
        "max_abs_diff": max_diff, "diff_target": TARGET_DIFF, "memory_bounded": bounded,
        "load_avg": round(os.getloadavg()[0], 2), "quick": args.quick,
        "rows": [{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in r.items()
                  if not k.endswith("_values")} for r in rows],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
