"""Planning a large study is linear in cells: `probe grid run --dry-run` work (load + validate, list, price).

ours: seconds per 1,000 cells of the whole dry-run plan (``StudySpec.from_dict`` with validation, the cell
list with done/todo, the GPU-time estimate) at 100,000 cells. reference: the straightforward validator — build
and check every cell's training config (``config_for`` + ``check_cell_data`` per cell), as probe did before —
timed on 5,000 cells, per 1,000 cells. ``linearity``: ours per cell at 100,000 / ours per cell at 10,000
(1 = linear; the old dry-run was quadratic and did not finish 100,000 cells in 15 min).

    python benchmarks/plan_scaling.py [--quick]
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE = {
    "seed": 0, "device": "cpu",
    "model": {"family": "resnet", "size": "tiny"},
    "data": {"background": "smooth", "patch": 16},
    "degradation": {"type": "rain", "preset": "small"},
    "train": {"iterations": 2, "batch": 2},
    "eval": {"n_images": 2, "splits": {"id": {"type": "rain", "preset": "small"}}},
}


def raw_spec(seeds: int) -> dict:
    return {"study": {"name": "bench"}, "base": copy.deepcopy(BASE),
            "axes": {"seed": list(range(seeds)), "n_backgrounds": list(range(1, 101))}}


def ours(seeds: int, out: Path) -> float:
    from probe.grid.estimate import estimate_study
    from probe.grid.runner import run_grid
    from probe.grid.spec import StudySpec

    t0 = time.perf_counter()
    spec = StudySpec.from_dict(raw_spec(seeds))
    summary = run_grid(spec, out, dry_run=True)
    estimate_study(spec)
    assert len(summary["cells"]) == seeds * 100
    return time.perf_counter() - t0


def reference(seeds: int) -> float:
    from probe.grid.checks import check_cell_data
    from probe.grid.spec import StudySpec

    spec = StudySpec.from_dict(raw_spec(1))
    spec.axes = raw_spec(seeds)["axes"]
    t0 = time.perf_counter()
    for cell in spec.cells():
        check_cell_data(spec.config_for(cell), spec.source)
    return time.perf_counter() - t0


def main() -> None:
    quick = "--quick" in sys.argv
    reps = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        ours(10, Path(tmp) / "warm")  # imports, caches
        big, small, ref = [], [], []
        for _ in range(reps):  # interleaved
            big.append(ours(1000, Path(tmp) / "o") / 100)     # s per 1,000 cells at 100,000 cells
            small.append(ours(100, Path(tmp) / "o") / 10)     # s per 1,000 cells at 10,000 cells
            ref.append(reference(50) / 5)                     # s per 1,000 cells, every config built
    o, s, r = statistics.median(big), statistics.median(small), statistics.median(ref)
    print(f"{'':28s}{'s / 1000 cells':>16s}")
    print(f"{'ours, 100,000 cells':28s}{o:16.3f}")
    print(f"{'ours, 10,000 cells':28s}{s:16.3f}")
    print(f"{'every config built (5,000)':28s}{r:16.3f}")
    print(json.dumps({"benchmark": "plan_scaling", "ours": round(o, 4), "reference": round(r, 4),
                      "unit": "s per 1000 cells", "ratio": round(r / o, 2), "linearity": round(o / s, 2),
                      "seconds_100k": round(o * 100, 1), "target": "linearity <= 1.5 and 100,000 cells < 30 s",
                      "meets": bool(o / s <= 1.5 and o * 100 < 30), "repetitions": reps,
                      "machine": f"{os.cpu_count()} cores, cpu"}))


if __name__ == "__main__":
    main()
