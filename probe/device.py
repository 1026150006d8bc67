"""One place for device placement, evaluation mode and numeric precision (trainer, grid, probes, benchmarks).

::

    from probe.device import resolve_device, to_device, prepared, autocast
    dev = resolve_device("auto")                 # cuda when available, else cpu
    batch = to_device(batch, dev)                # tensors, DegradedBatch, EvalData, dicts, lists: moved once
    with prepared(model, dev) as m:              # on ``dev``, eval mode, no gradients; mode restored after
        y = m(batch.degraded)
    with autocast(dev, "bf16"):                  # fp32 | bf16 | fp16 mixed precision (no-op for fp32)
        loss = model(x).sub(y).abs().mean()

Rules every module follows: tensors are created on the device of the data they combine with
(``device=x.device``), random numbers come from CPU generators (reproducible per seed) and are moved, and
results leave the device once, at the end (``.cpu()`` just before ``.numpy()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from probe.errors import ConfigError

#: ``train.precision`` values: the autocast dtype (None = plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) → CUDA when available, else CPU; anything else is checked for availability.

    Raises :class:`~probe.errors.ConfigError` for an unknown name or an absent accelerator.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device {name!r} is not a device name (auto, cpu, cuda, cuda:N, mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
                              f"are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available on this machine")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free module)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor inside moved to ``device``: tensors, dataclasses (``DegradedBatch``,
    ``EvalData``: a new instance), dicts, lists and tuples; anything else is returned as is. Tensors already
    there are not copied."""
    device = torch.device(device)
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=non_blocking)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_device(getattr(obj, f.name), device, non_blocking)
                   for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


@contextmanager
def prepared(model: nn.Module, device: torch.device | str | None = None, *, grad: bool = False
             ) -> Iterator[nn.Module]:
    """``model`` moved to ``device`` (default: where it is), in eval mode, without gradients unless ``grad``;
    its previous train/eval mode is restored on exit (the device is not: moving back and forth costs)."""
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad() if not grad else nullcontext():
            yield model
    finally:
        model.train(was_training)


@contextmanager
def full_precision() -> Iterator[None]:
    """Plain float32 inside: TF32 off for cuDNN convolutions and CUDA matmuls (PyTorch turns it on for
    cuDNN convolutions by default, which rounds their inputs to a 10-bit mantissa on Ampere and later
    GPUs); the previous settings are restored on exit. A no-op in effect on the CPU. Used by every probe
    (:class:`probe.probes.base.Probe`), so GPU and CPU measurements agree to float32 rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check_precision(precision: str, where: str = "precision") -> torch.dtype | None:
    """The autocast dtype of ``precision`` (fp32 → None); :class:`ConfigError` for anything else."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where} = {precision!r} is invalid; expected {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def autocast(device: torch.device | str, precision: str = "fp32"):
    """A context manager running the forward pass in ``precision`` on ``device`` (``torch.autocast``).

    fp32 is a no-op; bf16 works on CPU and CUDA; fp16 is for CUDA (pair it with a gradient scaler, see
    :func:`grad_scaler`). Source: PyTorch automatic mixed precision (torch.amp).
    """
    dtype = check_precision(precision)
    device = torch.device(device)
    if dtype is None:
        return nullcontext()
    if device.type not in ("cuda", "cpu", "mps", "xpu"):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device | str, precision: str = "fp32") -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 on CUDA (bf16 and fp32 need none)."""
    device = torch.device(device)
    enabled = precision == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type if device.type in ("cuda", "cpu") else "cpu", enabled=enabled)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (CUDA); a no-op on the CPU. For timing only."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device | str) -> int | None:
    """Bytes of peak allocated accelerator memory since the last reset (None on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None
