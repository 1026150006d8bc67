"""Peak memory and time of reading large real pairs into a 128-px evaluation batch: probe's crop on read
(:func:`probe.data.pairs.load_pairs`) vs the straightforward reader (decode every image full-size with the same
decoder, then centre-crop; what probe did before and what a user would write with Pillow + numpy).

Each side runs in a fresh subprocess (peak RSS by ``resource``, growth over the imports), interleaved, median of
5 repetitions after a warm-up; the images are written by another child so that no measuring process inherits a
large peak RSS (Linux keeps ``ru_maxrss`` across fork + exec). ``--quick``: 2000 × 1500 images instead of
6000 × 4000, 3 repetitions.

    python benchmarks/real_pairs_memory.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import resource, sys, time
import numpy as np, torch
from probe.data.images import read_image
from probe.data.pairs import find_pairs, load_pairs
root, mode = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "ours":
    batch, _ = load_pairs(root, patch=128)
else:
    outs = []
    for p in find_pairs(root).pairs:
        o, c = read_image(p.degraded), read_image(p.clean)
        h, w = o.shape[:2]
        top, left = (h - 128) // 2, (w - 128) // 2
        outs.append((o[top:top + 128, left:left + 128].copy(), c[top:top + 128, left:left + 128].copy()))
    batch = torch.from_numpy(np.stack([o for o, _ in outs])).permute(0, 3, 1, 2)
print(time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def make_pairs(root: Path, h: int, w: int, n: int = 4) -> None:
    """Write the pairs (in a child process: Linux keeps a process's peak RSS across fork + exec, so the
    measuring children must not be forked from a parent that once held the full-size arrays)."""
    if os.environ.get("_PROBE_BENCH_CHILD") != "1":
        subprocess.run([sys.executable, __file__, "--make", str(root), str(h), str(w), str(n)], check=True,
                       env=dict(os.environ, _PROBE_BENCH_CHILD="1", PYTHONPATH=str(ROOT)))
        return
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        clean = np.stack([(xx + i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        rainy = clean.copy()
        rainy[:, ::37] = 255
        Image.fromarray(rainy).save(root / f"rain-{i}.jpg", quality=90)
        Image.fromarray(clean).save(root / f"norain-{i}.jpg", quality=90)


def run(root: Path, mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", RUN, str(root), mode], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    seconds, mib = out.stdout.split()
    return float(seconds), float(mib)


def main() -> None:
    if sys.argv[1:2] == ["--make"]:
        root, h, w, n = sys.argv[2], *map(int, sys.argv[3:6])
        return make_pairs(Path(root), h, w, n)
    quick = "--quick" in sys.argv
    h, w = (1500, 2000) if quick else (4000, 6000)
    reps = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_pairs(root, h, w)
        run(root, "ours"), run(root, "reference")  # warm-up (file cache)
        rows = {"ours": [], "reference": []}
        for _ in range(reps):
            for mode in rows:
                rows[mode].append(run(root, mode))
    med = {m: (statistics.median(t for t, _ in r), statistics.median(x for _, x in r)) for m, r in rows.items()}
    print(f"4 pairs of {w}×{h} JPEG → 4 × 128² crops, median of {reps}")
    print(f"{'':10} {'seconds':>8} {'peak RSS growth (MiB)':>22}")
    for mode, (sec, mib) in med.items():
        print(f"{mode:10} {sec:8.2f} {mib:22.1f}")
    ours, ref = med["ours"][1], med["reference"][1]
    ratio = ours / ref if ref else float("nan")
    print(json.dumps({"benchmark": "real_pairs_memory", "ours": round(ours, 1), "reference": round(ref, 1),
                      "unit": "MiB peak RSS growth", "ratio": round(ratio, 3), "target": 0.5,
                      "meets": bool(ratio <= 0.5), "seconds_ours": round(med["ours"][0], 2),
                      "seconds_reference": round(med["reference"][0], 2), "image": f"{w}x{h}", "pairs": 4,
                      "machine": f"{os.cpu_count()} cores, cpu"}))


if __name__ == "__main__":
    main()
