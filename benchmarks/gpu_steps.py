"""Shared timing helpers of ``gpu_train.py`` and ``gpu_check.py`` (not a benchmark itself).

* :func:`bare_step` — the reference: a bare PyTorch loop (same model, batch, Adam, L1; batches pre-generated
  on the device; autocast and channels-last as asked);
* :func:`trainer_step` — probe's trainer on a real run (rain synthesised on the fly), per-step time between
  two of its logged steps, (T(n2) − T(n1)) / (n2 − n1), so fixed costs (model build, evaluation set, final
  validation) stay outside the window.
Both return ``(ms per step, peak device memory in bytes or None)``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from probe.data.paired import PairedStream  # noqa: E402
from probe.device import autocast, peak_memory, synchronize  # noqa: E402
from probe.models import FAMILIES, build  # noqa: E402

FAMILY_NAMES = ("resnet", "unet", "swinir", "nafnet")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bare_step(family: str, size: str, patch: int, batch: int, precision: str, channels_last: bool,
              steps: int, device: torch.device, warmup: int = 3, model_kwargs: dict | None = None,
              compile: bool = False) -> tuple[float, int | None]:
    torch.manual_seed(0)
    model = build(family, size, **(model_kwargs or {})).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99),
                           fused=True if device.type == "cuda" else None)  # as the trainer
    loss_fn = torch.nn.L1Loss()
    stream = PairedStream("smooth", 4, {"type": "rain", "preset": "small"}, patch=patch, batch=batch, seed=0,
                          device=device)
    data = [stream.batch(i) for i in range(4)]
    pairs = [(b.degraded.contiguous(memory_format=torch.channels_last) if channels_last else b.degraded, b.clean)
             for b in data]
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    reset_peak(device)

    def run(n: int) -> None:
        for i in range(n):
            x, y = pairs[i % len(pairs)]
            with autocast(device, precision):
                pred = forward(x)
            loss = loss_fn(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    run(warmup)
    synchronize(device)
    t0 = time.perf_counter()
    run(steps)
    synchronize(device)
    return (time.perf_counter() - t0) / steps * 1e3, peak_memory(device)


def trainer_config(family: str, size: str, patch: int, batch: int, precision: str, iterations: int,
                   device: torch.device, log_every: int = 50) -> dict[str, Any]:
    return {"name": f"bench_{family}", "seed": 0, "device": str(device),
            "model": {"family": family, "size": size},
            "data": {"background": "smooth", "n_backgrounds": 16, "patch": patch, "clean_fraction": 0.1},
            "degradation": {"type": "rain", "preset": "small"},
            "train": {"iterations": iterations, "batch": batch, "lr": 2e-4, "checkpoint_every": 0,
                      "log_every": log_every, "precision": precision},
            "eval": {"n_images": 4, "splits": {"id": {"type": "rain", "preset": "small"}}}}


def logged_elapsed(log: str) -> dict[int, float]:
    """``{step: elapsed_s}`` from a run's ``train.log`` (the trainer logs after a host sync)."""
    out = {}
    for line in log.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "step" in fields and "elapsed_s" in fields and fields["step"].isdigit():
            out[int(fields["step"])] = float(fields["elapsed_s"])
    return out


def trainer_step(family: str, size: str, patch: int, batch: int, precision: str, n1: int, n2: int,
                 device: torch.device) -> tuple[float, int | None]:
    """ms per step of one trainer run of n2 steps, timed between its logged steps n1 and n2 (so the model
    build, evaluation set, warm-up and final validation are outside the window); logs every n1 steps."""
    from probe.train import train

    reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        train(trainer_config(family, size, patch, batch, precision, n2, device, log_every=n1), tmp,
              show_progress=False)
        elapsed = logged_elapsed(open(os.path.join(tmp, "train.log")).read())
    return (elapsed[n2] - elapsed[n1]) / (n2 - n1) * 1e3, peak_memory(device)


def is_convolutional(family: str) -> bool:
    return bool(getattr(FAMILIES.get(family), "channels_last", False))


def mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)
