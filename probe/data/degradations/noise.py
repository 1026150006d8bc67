"""Noise: additive Gaussian (sigma in 8-bit levels) or Poisson (shot) noise, with its ground-truth layer.

``kind = "gaussian"``: ``O = clamp(B + sigma/255 * n, 0, 1)``, n ~ N(0, 1) per pixel and channel; ``sigma``
is given in 8-bit levels (``sigma = [15, 25]`` means 15/255 … 25/255, the denoising literature's σ).
``kind = "poisson"``: ``O = clamp(Poisson(scale * B) / scale, 0, 1)``; ``scale`` is the photon count of a
white pixel (higher = cleaner; the noise std at intensity x is sqrt(x / scale)).

The layer is ``D = O - B`` (the clipping included) and ``O = clamp(B + D, 0, 1)`` holds exactly; the mask is
all ones (noise is everywhere), the soft mask ``|D|`` (max over channels) normalised per image.

>>> import torch
>>> out = Noise(kind="gaussian", sigma=25).apply(torch.full((1, 3, 32, 32), 0.5), torch.Generator().manual_seed(0))
>>> round(float(out.layer.std() * 255))
25
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.data.degradations.base import Degradation, Uniform, device_generator, finish, parse_kind, per_image_max
from probe.data.types import DegradedBatch
from probe.errors import ConfigError

KINDS = ("gaussian", "poisson")
KIND_KEYS = {"gaussian": "sigma", "poisson": "scale"}

PRESETS: dict[str, dict[str, Any]] = {  # per preset, one table per kind (only the chosen kind's is used)
    "small": {"sigma": [5, 15], "scale": [200, 500]},
    "medium": {"sigma": [15, 30], "scale": [50, 200]},
    "large": {"sigma": [30, 50], "scale": [10, 50]},
    "random": {"sigma": [5, 50], "scale": [10, 500]},
}


class Noise(Degradation):
    """Gaussian or Poisson noise (see the module docstring).

    Spec keys: ``preset`` (small | medium | large | random; default small), ``kind`` (gaussian | poisson;
    default gaussian), ``sigma = [lo, hi]`` (gaussian, 8-bit levels in [0, 255]), ``scale = [lo, hi]``
    (poisson, photons at white, in [0.1, 1e6]).

    >>> Noise(preset="medium", kind="poisson").describe()["scale"]
    [50.0, 200.0]
    """

    name: ClassVar[str] = "noise"
    keys: ClassVar[tuple[str, ...]] = ("kind", "sigma", "scale")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"
    decomposition: ClassVar[str] = "noise"

    def _resolve(self, preset: str | None, spec: dict[str, Any]) -> dict[str, Any]:
        kind = parse_kind(self.name, "kind", spec.get("kind", "gaussian"), KINDS)
        other = [KIND_KEYS[k] for k in KINDS if k != kind and KIND_KEYS[k] in spec]
        if other:
            raise ConfigError(f"{self.name}: {other[0]!r} does not apply to kind={kind!r}; "
                              f"use {KIND_KEYS[kind]!r}")
        key = KIND_KEYS[kind]
        table = self.presets.get(preset, {}) if preset else {}
        return {"kind": kind, key: spec.get(key, table.get(key))}

    def _configure(self, r: dict[str, Any]) -> None:
        self.kind = r["kind"]
        if self.kind == "gaussian":
            self.sigma = Uniform.parse(self.name, "sigma", r["sigma"], 0.0, 255.0, " (8-bit levels)")
        else:
            self.scale = Uniform.parse(self.name, "scale", r["scale"], 0.1, 1e6, " (photons at white)")

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        if self.kind == "gaussian":
            return {"sigma": self.sigma.sample(n, generator)}
        return {"scale": self.scale.sample(n, generator)}

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        dev, dtype = clean.device, clean.dtype
        g = device_generator(generator, dev)
        if self.kind == "gaussian":
            sigma = (params["sigma"] / 255.0).to(device=dev, dtype=dtype).view(-1, 1, 1, 1)
            noise = torch.randn(clean.shape, generator=g, device=dev, dtype=dtype)
            target = (clean + sigma * noise).clamp_(0.0, 1.0)
        else:
            scale = params["scale"].to(device=dev, dtype=dtype).view(-1, 1, 1, 1)
            rate = (clean.clamp(0.0, 1.0) * scale)
            target = (torch.poisson(rate, generator=g) / scale).clamp_(0.0, 1.0)
        layer = target - clean
        magnitude = layer.abs().amax(1, keepdim=True)
        peak = per_image_max(magnitude)
        soft = magnitude / torch.where(peak > 0, peak, torch.ones_like(peak))
        return finish(clean, layer, torch.ones_like(magnitude), soft, params)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.name, "preset": self.preset, "kind": self.kind}
        if self.kind == "gaussian":
            out["sigma"] = self.sigma.describe()
            out["sigma_units"] = "8-bit levels (/255)"
        else:
            out["scale"] = self.scale.describe()
        return out
