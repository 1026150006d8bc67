"""Spatially correlated Gaussian noise (a kind a white-noise denoiser has not seen), with its ground-truth layer.

White Gaussian noise w ~ N(0, 1) is drawn on a frame ``ceil(3 corr)`` px larger on every side, filtered by
a normalised 2-D Gaussian of ``corr`` pixels (separable taps g) and rescaled by 1 / Σᵢ gᵢ² (the std of the
filtered field: Σᵢⱼ (gᵢgⱼ)² = (Σ gᵢ²)²), so every pixel has exactly std ``sigma`` / 255 and the field is
stationary up to the border (valid filtering, no padding). Channels are independent.
``O = clamp(B + sigma/255 · n_corr, 0, 1)``; the layer is ``D = O − B`` (the clipping included); the mask is all
ones (noise is everywhere), the soft mask ``max_c |D|`` normalised per image. Sensor noise after demosaicing
and denoising pipelines is correlated this way (e.g. Plötz & Roth, CVPR 2017, on real camera noise).

>>> import torch
>>> deg = NoiseCorrelated(sigma=20, corr=1.5)
>>> out = deg.apply(torch.full((2, 3, 48, 48), 0.5), torch.Generator().manual_seed(0))
>>> round(float(out.layer.std() * 255))
20
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.data.degradations.base import (
    Degradation,
    Uniform,
    device_generator,
    finish,
    gaussian_taps,
    per_image_max,
    separable_filter,
)
from probe.data.types import DegradedBatch

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"sigma": [5, 15], "corr": [0.7, 1.5]},
    "medium": {"sigma": [15, 30], "corr": [1.0, 2.0]},
    "large": {"sigma": [30, 50], "corr": [1.5, 3.0]},
}


class NoiseCorrelated(Degradation):
    """Spatially correlated Gaussian noise (see the module docstring).

    Spec keys: ``preset`` (small | medium | large; default small), ``sigma = [lo, hi]`` (per-pixel std in
    8-bit levels, [0, 255]), ``corr = [lo, hi]`` (correlation length: std of the Gaussian filter in pixels,
    [0.3, 8]; the noise's autocorrelation is a Gaussian of std ``corr`` · √2).

    >>> NoiseCorrelated(preset="small").describe()["corr"]
    [0.7, 1.5]
    """

    name: ClassVar[str] = "noise_correlated"
    keys: ClassVar[tuple[str, ...]] = ("sigma", "corr")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"
    decomposition: ClassVar[str] = "noise"

    def _configure(self, r: dict[str, Any]) -> None:
        self.sigma = Uniform.parse(self.name, "sigma", r["sigma"], 0.0, 255.0, " (8-bit levels)")
        self.corr = Uniform.parse(self.name, "corr", r["corr"], 0.3, 8.0, " pixels")

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {"sigma": self.sigma.sample(n, generator), "corr": self.corr.sample(n, generator)}

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        n, c, h, w = clean.shape
        dev, dtype = clean.device, clean.dtype
        corr = params["corr"].to(torch.float64)
        radius = int(math.ceil(3 * float(corr.max()))) if n else 0
        taps = gaussian_taps(corr, 2 * radius + 1, radius=torch.ceil(3 * corr))  # (N, K), each sums to 1
        white = torch.randn((n, c, h + 2 * radius, w + 2 * radius), generator=device_generator(generator, dev),
                            device=dev, dtype=dtype)
        field = separable_filter(white, taps) / (taps**2).sum(1).to(device=dev, dtype=dtype).view(-1, 1, 1, 1)
        sigma = (params["sigma"] / 255.0).to(device=dev, dtype=dtype).view(-1, 1, 1, 1)
        layer = (clean + sigma * field).clamp_(0.0, 1.0) - clean
        magnitude = layer.abs().amax(1, keepdim=True)
        peak = per_image_max(magnitude)
        soft = magnitude / torch.where(peak > 0, peak, torch.ones_like(peak))
        return finish(clean, layer, torch.ones_like(magnitude), soft, params)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "preset": self.preset, "sigma": self.sigma.describe(),
                "sigma_units": "8-bit levels (/255)", "corr": self.corr.describe()}
