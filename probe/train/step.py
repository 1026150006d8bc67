"""The parts of a training step that keep it near the bare PyTorch loop on an accelerator.

* :class:`Prefetcher` — batches synthesised on the training device; on CUDA the next batch is made by a
  background thread on a side stream while the current step computes (synthesis overlaps compute).
* :class:`LossWindow` — per-step losses stay on the device; the host reads them once per window (every
  ``log_every`` steps and at every checkpoint / validation / the end), which is also when a non-finite loss is
  noticed — and its *first* step is still recorded exactly.
* :func:`step_setup` — the resolved precision (``fp32 | bf16 | fp16``, ``auto`` = bf16 on CUDA, fp32
  elsewhere), channels-last memory format (``auto`` = on CUDA for convolutional families) and the optional
  ``torch.compile`` of the training forward.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from probe.device import to_device


@dataclass
class StepSetup:
    precision: str
    channels_last: bool
    compiled: bool

    def describe(self) -> dict[str, Any]:
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compiled}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA (when the GPU supports it), fp32 elsewhere; other values pass through."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_channels_last(option: Any, model: nn.Module, device: torch.device) -> bool:
    """``auto`` → on for a convolutional family (class attribute ``channels_last``) on CUDA; else the bool."""
    if option == "auto":
        return device.type == "cuda" and bool(getattr(type(model), "channels_last", False))
    return bool(option)


def step_setup(config: Any, model: nn.Module, device: torch.device) -> tuple[StepSetup, nn.Module]:
    """Apply the config's step options to ``model`` (in place) and return them with the module to call in
    the training forward (the compiled one when ``train.compile``)."""
    t = config.train
    setup = StepSetup(resolve_precision(t.precision, device), resolve_channels_last(t.channels_last, model, device),
                      bool(t.compile))
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    forward: nn.Module = torch.compile(model) if setup.compiled else model  # type: ignore[assignment]
    return setup, forward


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class LossWindow:
    """Per-step losses kept on the device; :meth:`flush` copies them to the host in one transfer.

    ``flush()`` returns ``(values, bad)``: the losses since the last flush (floats, in step order) and
    ``(step, value)`` of the first non-finite one (None if all are finite)."""

    def __init__(self, device: torch.device, capacity: int):
        self.capacity = max(1, int(capacity))
        self.buffer = torch.zeros(self.capacity, device=device, dtype=torch.float32)
        self.first_step = 0
        self.count = 0

    def add(self, step: int, loss: Tensor) -> None:
        if self.count == 0:
            self.first_step = step
        if self.count == self.capacity:  # grow (only when flushes are rarer than the capacity)
            self.buffer = torch.cat([self.buffer, torch.zeros_like(self.buffer)])
            self.capacity *= 2
        self.buffer[self.count] = loss.detach().float()
        self.count += 1

    def flush(self) -> tuple[list[float], tuple[int, float] | None]:
        if self.count == 0:
            return [], None
        values = self.buffer[: self.count].cpu().tolist()
        first = self.first_step
        self.count = 0
        for i, value in enumerate(values):
            if value != value or value in (float("inf"), float("-inf")):
                return values, (first + i, value)
        return values, None


class Prefetcher:
    """``stream.batch(step)`` for ``step`` in ``[start, stop)``, moved to ``device``.

    On CUDA a daemon thread synthesises up to ``depth`` batches ahead on a side stream (the consumer waits
    on an event, so no step sees an unfinished batch); elsewhere batches are made in the loop. Either way the
    batch of a step is the same pure function of (config, seed, step)."""

    def __init__(self, stream: Any, start: int, stop: int, device: torch.device, depth: int = 2):
        self.stream, self.start, self.stop, self.device = stream, start, stop, device
        self.depth = depth
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        if self.device.type != "cuda":
            for step in range(self.start, self.stop):
                yield to_device(self.stream.batch(step), self.device)
            return
        yield from self._overlapped()

    def _overlapped(self) -> Iterator[Any]:
        items: queue.Queue = queue.Queue(maxsize=self.depth)
        side = torch.cuda.Stream(device=self.device)

        def work() -> None:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(side):
                    for step in range(self.start, self.stop):
                        if self._stop.is_set():
                            return
                        batch = to_device(self.stream.batch(step), self.device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(side)
                        items.put((batch, event, None))
            except BaseException as exc:  # surfaced in the training loop
                items.put((None, None, exc))

        current = torch.cuda.current_stream(self.device)
        side.wait_stream(current)  # the background images were uploaded on the current stream
        self._thread = threading.Thread(target=work, name="probe-prefetch", daemon=True)
        self._thread.start()
        try:
            for _ in range(self.start, self.stop):
                batch, event, exc = items.get()
                if exc is not None:
                    raise exc
                current.wait_event(event)
                for tensor in (batch.degraded, batch.clean):
                    tensor.record_stream(current)
                yield batch
        finally:
            self._stop.set()
            while not items.empty():  # unblock a producer waiting on a full queue
                items.get_nowait()
