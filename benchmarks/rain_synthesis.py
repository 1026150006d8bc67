"""Batched rain synthesis (probe, torch) vs a per-image numpy/scipy reference of the same streak model.

The reference is what a user would write from SCIENCE.md, one image at a time: a uniform per pixel, seeds
where u > 1 − amount, the streak kernel built with numpy coordinate math (the same anti-aliased line as
probe, co-authors' window length rule, OpenCV's width × width Gaussian, the 3 × 3 seed spread), the layer
by ``scipy.signal.fftconvolve(..., mode="same")``, min–max normalisation and the composite
``clip(B + beta R)`` with its mask. Both sides draw the ``random`` preset (the widest ranges) at 128 px;
timings are interleaved, median of the repetitions after a warm-up.

It also reports the synthesis cost as a fraction of one training step of the default study
(analyses/derain_complexity.toml: resnet tiny, batch 8, 48 px, rain ``small``; forward + backward + Adam).

    python benchmarks/rain_synthesis.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
from scipy.signal import fftconvolve

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from probe.data.degradations import make_degradation  # noqa: E402
from probe.data.degradations.rain import MASK_THRESHOLD, REFERENCE_PATCH, SEED_SPREAD  # noqa: E402
from probe.data.paired import PairedStream  # noqa: E402

PATCH = 128
TARGET = 20.0


# ---- the per-image reference ---------------------------------------------------------------------------
def reference_kernel(length: float, angle: float, width: int) -> np.ndarray:
    """The streak kernel of one image (odd square, centred), numpy only."""
    theta = math.radians(angle)
    c, s = math.cos(theta), math.sin(theta)
    vertical = abs(c) >= abs(s)
    half = (length - 1) / 2  # the co-authors' window rule: L pixels along the major axis (L / max(|c|, |s|) drawn)
    big = math.floor(half) + 1
    j = np.arange(-big, big + 1)
    w_major = np.clip(half + 1 - np.abs(j), 0, 1)
    q = j * (s / c if vertical else c / s)
    q0 = np.floor(q)
    frac = q - q0
    radius = big + 2 + width // 2
    size = 2 * radius + 1
    line = np.zeros((size, size))
    for k, wk in ((q0, 1 - frac), (q0 + 1, frac)):
        rows, cols = (j, k) if vertical else (k, j)
        np.add.at(line, (rows.astype(int) + radius, cols.astype(int) + radius), w_major * wk)
    kernel = fftconvolve(line, np.array(SEED_SPREAD), mode="same")
    if width > 1:  # cv2.GaussianBlur(k, (width, width), 0): a fixed table for width <= 7, else the sigma rule
        table = {3: [0.25, 0.5, 0.25], 5: [1, 4, 6, 4, 1], 7: [1, 3.5, 7, 9, 7, 3.5, 1]}
        if width in table:
            g = np.array(table[width], float)
        else:
            sigma = 0.3 * ((width - 1) * 0.5 - 1) + 0.8
            r = np.arange(width) - width // 2
            g = np.exp(-(r**2) / (2 * sigma**2))
        g /= g.sum()
        kernel = fftconvolve(kernel, np.outer(g, g), mode="same")
    return kernel


def reference_rain(clean: np.ndarray, amount: float, width: int, length: float, angle: float, beta: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (3, H, W) float64 → (degraded, layer R, mask)."""
    h, w = clean.shape[-2:]
    u = rng.random((h, w))
    seeds = np.where(u > 1 - amount, u, 0.0)
    r = fftconvolve(seeds, reference_kernel(length * h / REFERENCE_PATCH, angle, width), mode="same")
    lo, hi = r.min(), r.max()
    r = (r - lo) / (hi - lo) if hi > lo else np.zeros_like(r)
    degraded = np.clip(clean + beta * r[None], 0, 1)
    return degraded, r, r > MASK_THRESHOLD


def reference_batch(clean: np.ndarray, rng: np.random.Generator) -> list:
    out = []
    for image in clean:  # the random preset's parameter draws, per image
        amount = rng.uniform(0.002, 0.010)
        width = int(rng.choice([1, 3, 5, 7, 9]))
        out.append(reference_rain(image, amount, width, rng.uniform(25, 55), rng.uniform(-60, 60),
                                  rng.uniform(0.6, 1.0), rng))
    return out


# ---- timing helpers -----------------------------------------------------------------------------------
def timed(fn, device: torch.device | None = None) -> float:
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def train_step_time(reps: int) -> tuple[float, str]:
    """Median seconds of one default-study training step (forward + backward + Adam)."""
    try:
        from probe.models import build

        model, name = build("resnet", size="tiny"), "resnet tiny"
    except Exception:  # probe.models not available: a plain 8-layer conv net of 32 channels
        layers = [torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU()]
        for _ in range(6):
            layers += [torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU()]
        model, name = torch.nn.Sequential(*layers, torch.nn.Conv2d(32, 3, 3, padding=1)), "8-layer conv 32 ch"
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.rand(8, 3, 48, 48), torch.rand(8, 3, 48, 48)

    def step():
        loss = torch.nn.functional.l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    return statistics.median(timed(step) for _ in range(reps)), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repetitions")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1, like the single-threaded reference; 0 = torch's "
                             "default — unreliable on a shared, loaded machine)")
    parser.add_argument("--device", default="cpu", help="device for ours (cpu, cuda); the reference is numpy")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch, reps = (16, 5) if args.quick else (64, 9)
    threads = torch.get_num_threads()
    rain = make_degradation({"type": "rain", "preset": "random"})
    clean_t = torch.rand(batch, 3, PATCH, PATCH, generator=torch.Generator().manual_seed(1))
    clean_np = clean_t.double().numpy()
    clean_t = clean_t.to(device)
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)

    ours_t, ref_t = [], []
    rain.apply(clean_t, g)  # warm-up
    reference_batch(clean_np[:4], rng)
    for _ in range(reps):  # interleaved
        ours_t.append(timed(lambda: rain.apply(clean_t, g), device))
        ref_t.append(timed(lambda: reference_batch(clean_np, rng)))
    ours = batch / statistics.median(ours_t)
    ref = batch / statistics.median(ref_t)

    # synthesis as a share of one training step of the default study (batch 8, 48 px, rain small)
    small = make_degradation({"type": "rain", "preset": "small"})
    clean_s = torch.rand(8, 3, 48, 48)
    small.apply(clean_s, g)
    synth_s = statistics.median(timed(lambda: small.apply(clean_s, g)) for _ in range(reps * 3))  # on the CPU
    stream = PairedStream("natural", 64, {"type": "rain", "preset": "small"}, patch=48, batch=8, seed=0)
    stream.batch(0)
    data_s = statistics.median(timed(lambda i=i: stream.batch(i)) for i in range(1, reps * 3 + 1))
    step_s, model_name = train_step_time(reps)

    rows = [("ours (batched torch)", ours), ("reference (numpy/scipy per image)", ref)]
    print(f"rain synthesis, preset random, {PATCH} px, batch {batch}, {reps} interleaved reps, "
          f"ours on {device}, torch threads {threads}")
    for name, value in rows:
        print(f"  {name:36s} {value:10.1f} img/s")
    print(f"  ratio {ours / ref:.1f}x (target >= {TARGET:g}x)")
    print(f"default-study step ({model_name}, batch 8, 48 px): train {step_s * 1e3:.2f} ms, "
          f"rain synthesis {synth_s * 1e3:.2f} ms = {synth_s / step_s:.1%} of a step; whole data step "
          f"(crops + rain + clean share) {data_s * 1e3:.2f} ms = {data_s / step_s:.1%}")
    cores = os.cpu_count()
    print(json.dumps({
        "benchmark": "rain_synthesis", "ours": round(ours, 1), "reference": round(ref, 1), "unit": "img/s",
        "ratio": round(ours / ref, 2), "target": TARGET, "meets": bool(ours / ref >= TARGET),
        "machine": f"{cores} cores, {device.type}", "torch_threads": threads, "patch": PATCH, "batch": batch,
        "preset": "random", "synthesis_ms_per_step": round(synth_s * 1e3, 3),
        "train_step_ms": round(step_s * 1e3, 3), "synthesis_fraction_of_step": round(synth_s / step_s, 4),
        "data_step_ms": round(data_s * 1e3, 3), "data_fraction_of_step": round(data_s / step_s, 4),
        "train_model": model_name, "quick": bool(args.quick),
    }))


if __name__ == "__main__":
    main()
