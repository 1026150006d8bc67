"""Per-step cost of probe's trainer vs a bare PyTorch loop (same model, batch, optimizer, data in memory).

Two ratios:
* ``overhead``: probe's trainer fed the same pre-generated batches as the bare loop (target ≤ 1.10);
* ``with_synthesis``: probe's trainer synthesising rain on the fly (what a real run does).

Per-step time of the trainer is measured as (T(N2) − T(N1)) / (N2 − N1) over two run lengths, which cancels
its fixed costs (model build, evaluation set, final validation, checkpoint write). Interleaved repetitions,
median reported.

    python benchmarks/trainer_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from unittest import mock

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from probe.data.paired import PairedStream  # noqa: E402
from probe.models import build  # noqa: E402
from probe.train.config import TrainConfig  # noqa: E402
from probe.train.trainer import train  # noqa: E402

CONFIG = {
    "name": "bench", "seed": 0, "device": "cpu",
    "model": {"family": "resnet", "size": "tiny"},
    "data": {"background": "natural", "n_backgrounds": 64, "patch": 48, "clean_fraction": 0.1},
    "degradation": {"type": "rain", "preset": "small"},
    "train": {"iterations": 10, "batch": 8, "lr": 1e-3, "checkpoint_every": 0, "log_every": 10},
    "eval": {"n_images": 4, "splits": {"id": {"type": "rain", "preset": "small"}}},
}


def bare_loop(batches, steps: int) -> float:
    torch.manual_seed(0)
    model = build("resnet", "tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    loss_fn = torch.nn.L1Loss()
    t0 = time.perf_counter()
    for step in range(steps):
        degraded, clean = batches[step % len(batches)]
        loss = loss_fn(model(degraded), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def trainer_time(iterations: int, pregenerated) -> float:
    config = TrainConfig.from_dict({**CONFIG, "train": {**CONFIG["train"], "iterations": iterations}})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if pregenerated is None:
            train(config, tmp, show_progress=False)
        else:
            with mock.patch.object(PairedStream, "batch", lambda self, step: pregenerated[step % len(pregenerated)]):
                train(config, tmp, show_progress=False)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reps = 3 if args.quick else 5
    n1, n2 = (10, 40) if args.quick else (20, 120)
    stream = PairedStream("natural", 64, {"type": "rain", "preset": "small"}, patch=48, batch=8, seed=0)
    batches = [stream.batch(i) for i in range(16)]
    pairs = [(b.degraded, b.clean) for b in batches]
    t0 = time.perf_counter()
    for i in range(16):
        stream.batch(100 + i)
    synth_per_step = (time.perf_counter() - t0) / 16
    bare, ours, ours_synth = [], [], []
    bare_loop(pairs, 5)  # warm-up
    trainer_time(n1, batches)
    for _ in range(reps):
        bare.append(bare_loop(pairs, n2 - n1))
        ours.append((trainer_time(n2, batches) - trainer_time(n1, batches)) / (n2 - n1))
        ours_synth.append((trainer_time(n2, None) - trainer_time(n1, None)) / (n2 - n1))
    b, o, s = statistics.median(bare), statistics.median(ours), statistics.median(ours_synth)
    print(f"{'variant':34s} {'ms/step':>9s} {'ratio':>7s}")
    print(f"{'bare PyTorch loop (reference)':34s} {b * 1e3:9.2f} {1.0:7.3f}")
    print(f"{'probe trainer, pre-generated data':34s} {o * 1e3:9.2f} {o / b:7.3f}")
    print(f"{'probe trainer, on-the-fly rain':34s} {s * 1e3:9.2f} {s / b:7.3f}")
    print(f"synthesis alone: {synth_per_step * 1e3:.2f} ms per batch of 8 at 48 px "
          f"({synth_per_step / b:.1%} of a bare step; synthesis runs in the training process, not overlapped)")
    print(json.dumps({"benchmark": "trainer_overhead", "ours": round(o * 1e3, 3), "reference": round(b * 1e3, 3),
                      "unit": "ms/step", "ratio": round(o / b, 3), "target": 1.10, "meets": o / b <= 1.10,
                      "ratio_with_synthesis": round(s / b, 3), "synthesis_ms_per_batch": round(synth_per_step * 1e3, 3),
                      "machine": f"{os.cpu_count()} cores, cpu, 1 torch thread"}))


if __name__ == "__main__":
    main()
