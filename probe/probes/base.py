"""The probe contract: ``Probe(**params).run(model, data) -> ProbeResult``.

A probe is one file holding one :class:`Probe` subclass, registered with one line in
:data:`probe.probes.PROBES`. Parameters are validated in ``__init__`` (scikit-learn style) and recorded
with every stored result; ``run`` returns arrays with *named dimensions* (xarray) plus tidy scalar
metrics::

    from probe.probes import PROBES
    result = PROBES.get("generalization")().run(model, data)
    result.metrics            # [{"split": "ood", "metric": "psnr", "value": 24.1}, ...]
    result.arrays["psnr"]     # xarray.DataArray with dims ("split", "image")
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from probe.data.types import DegradedBatch


@dataclass
class EvalData:
    """A fixed, seeded evaluation set: the same held-out backgrounds under every declared split.

    ``splits`` maps a split name (``id``, ``ood``, …) to a batch whose ``clean`` images are identical across
    splits. ``degradations`` maps the same names to the degradation objects that made them, so probes can
    re-synthesise (e.g. the same rain on other backgrounds, ``alt_clean``). ``info`` is JSON metadata
    (background source, seed, patch, split specs) stored with every result.
    """

    splits: dict[str, DegradedBatch]
    degradations: dict[str, Any] = field(default_factory=dict)
    alt_clean: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def clean(self) -> torch.Tensor:
        return next(iter(self.splits.values())).clean

    def select(self, names: list[str] | None) -> EvalData:
        if not names:
            return self
        from probe.errors import ConfigError

        unknown = [n for n in names if n not in self.splits]
        if unknown:
            raise ConfigError(f"unknown split {unknown[0]!r}; available: {', '.join(self.splits)}")
        info = dict(self.info)
        if isinstance(info.get("splits"), dict):
            info["splits"] = {n: info["splits"].get(n) for n in names}
        return EvalData({n: self.splits[n] for n in names}, {n: self.degradations.get(n) for n in names},
                        self.alt_clean, info, self.seed)


@dataclass
class ProbeResult:
    """What a probe returns: named arrays (``xarray.DataArray``) and tidy scalar metric rows.

    Every metric row has ``split``, ``metric`` and ``value``; extra keys (``layer``, ``mask``, …) become
    columns of :func:`probe.store.read_metrics`.

    Non-finite values are never stored as numbers: :meth:`add_metric` stores NaN with a ``flag`` column
    saying why (the probe's reason, or ``"non-finite"`` for a NaN/±inf it did not explain); rows without a
    problem have ``flag`` "" (the store's missing string). A report marks flagged rows instead of showing
    a number.
    """

    arrays: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def add_metric(self, split: str, metric: str, value: float | None, flag: str | None = None,
                   **extra: Any) -> None:
        """Append one row; ``value`` None or non-finite → NaN with ``flag`` (default ``"non-finite"``).
        A ``flag`` given with a finite value marks it (e.g. "saturated") and keeps the value."""
        v = float("nan") if value is None else float(value)
        row: dict[str, Any] = {"split": split, "metric": metric, "value": v if math.isfinite(v) else float("nan"),
                               **extra}
        if flag or not math.isfinite(v):
            row["flag"] = str(flag or NONFINITE)
        self.metrics.append(row)


NONFINITE = "non-finite"  # the default flag of a metric row whose value is NaN or ±inf


def output_flag(output: torch.Tensor) -> str | None:
    """Flag for metrics computed from a model ``output`` (N, ...): None when every value is finite, else
    ``"non-finite model output (k of N images)"``."""
    bad = int((~torch.isfinite(output.detach())).flatten(1).any(1).sum())
    return None if bad == 0 else f"non-finite model output ({bad} of {output.shape[0]} images)"


def finite_or_flag(values: Any) -> tuple[bool, str | None]:
    """``(True, None)`` when every entry of ``values`` (tensor, array or number) is finite, else
    ``(False, "non-finite input (k of n values)")`` — for probes to flag results computed from broken data."""
    import numpy as np

    if isinstance(values, torch.Tensor):
        finite = torch.isfinite(values.detach())
        k, n = int((~finite).sum()), int(finite.numel())
    else:
        arr = np.asarray(values, dtype=np.float64)
        k, n = int((~np.isfinite(arr)).sum()), int(arr.size)
    return (k == 0, None) if k == 0 else (False, f"non-finite input ({k} of {n} values)")


class Probe:
    """Base class. Subclasses set ``name``, ``description`` and ``defaults``, and implement ``run``.

    Every subclass's ``run`` executes under :func:`probe.device.full_precision` (no TF32 in cuDNN
    convolutions or CUDA matmuls), so a probe measured on a GPU agrees with the CPU to float32 rounding
    rather than to TF32's 10-bit mantissa; training keeps its own precision setting.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "full_precision", False):
            return

        @functools.wraps(run)
        def run_full_precision(self, *args: Any, **kw: Any) -> Any:
            from probe.device import full_precision

            with full_precision():
                return run(self, *args, **kw)

        run_full_precision.full_precision = True  # type: ignore[attr-defined]
        cls.run = run_full_precision  # type: ignore[method-assign]

    def __init__(self, **params: Any):
        from probe.errors import ConfigError

        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for probe {self.name!r}; "
                              f"allowed: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.validate()

    def validate(self) -> None:
        """Check ``self.params``; raise :class:`probe.errors.ConfigError` naming the bad one."""

    def params_key(self) -> str:
        return json.dumps(self.params, sort_keys=True, default=str)

    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:  # pragma: no cover - abstract
        raise NotImplementedError


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Run ``model`` over ``images`` ``(N, C, H, W)`` in batches without gradients, on the model's device;
    the float32 output comes back on the device of ``images`` (so metrics run where the data lives).
    ``batch_size`` is capped by the pixel bound of :func:`probe.probes.bounds.images_per_forward`."""
    from probe.device import model_device
    from probe.probes.bounds import images_per_forward

    device = model_device(model)
    batch_size = images_per_forward(batch_size, tuple(images.shape[-2:]))[0]
    outputs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            outputs.append(model(images[start:start + batch_size].to(device)).float().to(images.device))
    return torch.cat(outputs) if outputs else images[:0].clone()
