"""What the full probe battery costs for one external network on a real-size test set, on CPU.

A UNet of realistic size (defined here: 4 levels, ~1.9 M parameters at ``--width 32``) is saved as a BasicSR
style checkpoint and measured by ``probe.measure.measure(..., arch=..., eval_folders=..., eval_patch=0)`` (full
images, no crop) on a folder of 481 × 321 ``rain/`` + ``norain/`` pairs (Rain100L/H layout and size) made here
with probe's own rain synthesis on procedural (dead-leaves) backgrounds. Every probe runs in its own child
process, so its wall time and peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in the child's whole
process: Python, torch, the network, the images) are its own. Probes run with their default parameters (their
own image bounds: see docs/your-own-network.md, "Cost on real test sets").

There is no side-by-side reference (``"reference": null``): this states a cost, it is not a speed-up claim.
``ours`` is the total wall time of the battery in seconds; ``peak_rss_mib`` the largest child peak.

    python benchmarks/external_battery.py [--quick] [--pairs N] [--width W]

``--unbounded`` runs the same battery without the pixels-per-forward bound (``PROBE_FORWARD_PIXELS=10**12``:
the batches probe used before the bound) — run both to compare peak memory.

``--quick``: every probe, 8 pairs (ddr's default n_backgrounds), width 8 (~0.12 M parameters). ``cem`` maps
each image on its default 128 px context crop around the ROI (docs/your-own-network.md, "Cost on real test
sets"); ``--cem-context 0`` maps whole images (hours on a CPU: the cost grows as (H·W)²).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBES = ["generalization", "decomposition", "activations", "cka", "ddr", "attribution", "cem"]
HEIGHT, WIDTH = 321, 481

NET_CODE = '''
import torch
from torch import nn


def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class BenchUNet(nn.Module):
    """A 4-level UNet predicting the rain layer (out = x - f(x)); input sides a multiple of 8."""

    def __init__(self, width=32):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.enc = nn.ModuleList([_block(3, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.mid = _block(w[2], w[3])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in (2, 1, 0)])
        self.dec = nn.ModuleList([_block(2 * w[i], w[i]) for i in (2, 1, 0)])
        self.head = nn.Conv2d(w[0], 3, 1)

    def forward(self, x):
        skips, h = [], x
        for enc in self.enc:
            h = enc(h)
            skips.append(h)
            h = nn.functional.max_pool2d(h, 2)
        h = self.mid(h)
        for up, dec in zip(self.up, self.dec):
            h = dec(torch.cat([up(h), skips.pop()], 1))
        return x - self.head(h)
'''


def make_pairs(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` 481 × 321 rainy/clean PNG pairs under ``folder/rain`` and ``folder/norain`` (Rain100L names)."""
    import numpy as np
    from PIL import Image

    from probe.data.synth import synthesize

    batch = synthesize(background="dead_leaves", degradation="rain", n=n, patch=WIDTH, seed=seed)
    top = (WIDTH - HEIGHT) // 2
    for sub in ("rain", "norain"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        for sub, img in (("rain", batch.degraded[i]), ("norain", batch.clean[i])):
            arr = (img[:, top:top + HEIGHT].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(folder / sub / f"{sub}-{i + 1:03d}.png")


def make_net(folder: Path, width: int) -> tuple[str, Path, int]:
    """(arch spec, checkpoint path, parameter count) of a randomly initialised, seeded BenchUNet."""
    import importlib.util

    import torch

    code = folder / "bench_unet.py"
    code.write_text(NET_CODE)
    spec = importlib.util.spec_from_file_location("bench_unet", code)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.BenchUNet(width=width)
    path = folder / "net_g.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return f"{code}:BenchUNet", path, sum(p.numel() for p in net.parameters())


def one_probe(args: argparse.Namespace) -> None:
    """Child: measure one probe, print one JSON line (wall s, status)."""
    import torch

    from probe.measure import measure

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    params = {"cem": {"context": args.cem_context or None}} if args.cem_context is not None else None
    summary = measure(args.ckpt, probes=[args.one], arch=args.arch, arch_kwargs={"width": args.width},
                      probe_params=params if args.one == "cem" else None,
                      pad_multiple=8, eval_folders={"test": args.data}, eval_patch=0, out=args.out,
                      show_progress=False)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(json.dumps({"probe": args.one, "wall_s": round(wall, 2), "rss_mib": round(rss),
                      "computed": summary["computed"], "chosen": summary.get("eval_data", [])[1:],
                      "failed": [f["cause"][:200] for f in summary["failed"]]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", default=None, help="default: all")
    parser.add_argument("--cem-context", type=int, default=None,
                        help="cem's context crop in px (default: the probe's, 128; 0 = whole images)")
    parser.add_argument("--unbounded", action="store_true",
                        help="PROBE_FORWARD_PIXELS=10**12: the batches as before the bound (the reference)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    for hidden in ("ckpt", "arch", "data", "out"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    pairs = args.pairs or (8 if args.quick else 10)
    width = args.width or (8 if args.quick else 32)
    if args.one:
        args.width = width
        return one_probe(args)
    probes = args.probes.split(",") if args.probes else list(PROBES)
    skipped = [p for p in PROBES if p not in probes]
    if skipped:
        print(f"not run: {', '.join(skipped)} (--probes)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_pairs(tmp / "test", pairs)
        arch, ckpt, n_params = make_net(tmp, width)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if args.unbounded:
            env["PROBE_FORWARD_PIXELS"] = str(10**12)
        for name in probes:
            t0 = time.perf_counter()
            extra = [] if args.cem_context is None else ["--cem-context", str(args.cem_context)]
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--width", str(width), *extra,
                                   "--threads", str(args.threads), "--ckpt", str(ckpt), "--arch", arch,
                                   "--data", str(tmp / "test"), "--out", str(tmp / "reports" / "results.h5")],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            line = (proc.stdout.strip().splitlines() or ["{}"])[-1]
            try:
                child = json.loads(line)
            except json.JSONDecodeError:
                child = {}
            if proc.returncode != 0 and not child.get("failed"):
                child["failed"] = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-3:]
            rows.append({"probe": name, "wall_s": round(wall, 1), "measure_s": child.get("wall_s"),
                         "peak_rss_mib": child.get("rss_mib"),
                         "ok": proc.returncode == 0 and not child.get("failed"),
                         "failed": child.get("failed"), "chosen": child.get("chosen")})
            for text in child.get("chosen") or []:
                print(f"    {text}")
            print(f"{name:15} {wall:8.1f} s  peak RSS {rows[-1]['peak_rss_mib']} MiB  "
                  f"{'ok' if rows[-1]['ok'] else 'FAILED ' + str(child.get('failed'))}", flush=True)
    total = sum(r["wall_s"] for r in rows)
    peaks = [r["peak_rss_mib"] for r in rows if r["peak_rss_mib"]]
    print(f"{'total':15} {total:8.1f} s  ({pairs} pairs of {WIDTH}x{HEIGHT}, {n_params / 1e6:.2f} M parameters)")
    print(json.dumps({"benchmark": "external_battery", "ours": round(total, 1), "reference": None,
                      "unit": "s (wall, whole battery)", "ratio": None, "target": None,
                      "meets": all(r["ok"] for r in rows), "peak_rss_mib": max(peaks) if peaks else None,
                      "per_probe": rows, "not_run": skipped,
                      "cem_context": "probe default (128)" if args.cem_context is None else args.cem_context or "whole",
                      "pairs": pairs, "image": [HEIGHT, WIDTH], "params": n_params,
                      "threads": args.threads,
                      "forward_pixels": os.environ.get("PROBE_FORWARD_PIXELS", "default")
                      if not args.unbounded else "unbounded", "load_average": [round(x, 2) for x in os.getloadavg()],
                      "machine": f"{os.cpu_count()} cores, cpu"}))


if __name__ == "__main__":
    main()
