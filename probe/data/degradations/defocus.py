"""Defocus blur: a uniform disk (pillbox) kernel of ``radius`` pixels — a blur kind unlike Gaussian or motion.

The kernel is the area of each pixel square covered by a disk of radius r centred on the pixel (0, 0),
estimated by 16 × 16 supersampling of every pixel, normalised to sum 1 (the thin-lens out-of-focus PSF of
geometric optics; MATLAB's ``fspecial('disk', r)`` is the same construction with an exact edge). Applied
per image by FFT on the reflect-padded batch (:func:`probe.data.degradations.blur.fft_blur`). Layer
``D = blurred − B`` (``O = clamp(B + D, 0, 1)`` exactly); mask where ``max_c |D| > mask_threshold/255``
(default 10 levels), soft mask ``max_c |D|`` normalised per image — as for ``blur``.

>>> import torch
>>> out = Defocus(radius=2).apply(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0))
>>> out.params["radius"].tolist()
[2.0, 2.0]
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.data.degradations.base import Degradation, Uniform, finish, per_image_max
from probe.data.degradations.blur import DEFAULT_MASK_THRESHOLD, fft_blur
from probe.data.types import DegradedBatch

SUPERSAMPLE = 16
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"radius": [1.0, 2.0]},
    "medium": {"radius": [2.0, 3.5]},
    "large": {"radius": [3.5, 6.0]},
}


def disk_taps(radius: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse disk kernels: ``dy, dx`` (N, T) int64 offsets and ``weight`` (N, T) float64 covered areas (not
    normalised; zero outside the disk), T = (2 ceil(max r) + 1)². ``radius`` (N,) in pixels (> 0).

    >>> dy, dx, w = disk_taps(torch.tensor([2.0]))
    >>> round(float(w[0].sum()), 1)  # the disk area, pi r^2 = 12.57
    12.6
    """
    r = radius.detach().cpu().to(torch.float64)
    big = int(math.ceil(float(r.max()))) if r.numel() else 0
    offsets = torch.arange(-big, big + 1, dtype=torch.float64)
    sub = (torch.arange(SUPERSAMPLE, dtype=torch.float64) + 0.5) / SUPERSAMPLE - 0.5
    y = (offsets.view(-1, 1) + sub.view(1, -1)).view(-1, 1, 1, 1)  # (K*S, 1, 1, 1) sample rows
    x = (offsets.view(-1, 1) + sub.view(1, -1)).view(1, 1, -1, 1)  # (1, 1, K*S, 1) sample columns
    inside = (y**2 + x**2) <= r.view(1, 1, 1, -1) ** 2  # (K*S, 1, K*S, N)
    k = len(offsets)
    area = inside.to(torch.float64).view(k, SUPERSAMPLE, k, SUPERSAMPLE, -1).mean((1, 3))  # (K, K, N)
    dy, dx = torch.meshgrid(offsets.long(), offsets.long(), indexing="ij")
    n = r.numel()
    return (dy.reshape(1, -1).expand(n, -1), dx.reshape(1, -1).expand(n, -1),
            area.permute(2, 0, 1).reshape(n, -1))


class Defocus(Degradation):
    """Defocus (disk) blur (see the module docstring).

    Spec keys: ``preset`` (small | medium | large; default small), ``radius = [lo, hi]`` (disk radius in
    pixels, [0.5, 32]), ``mask_threshold`` (8-bit levels, default 10).

    >>> Defocus(preset="small").describe()["radius"]
    [1.0, 2.0]
    """

    name: ClassVar[str] = "defocus"
    keys: ClassVar[tuple[str, ...]] = ("radius", "mask_threshold")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"
    decomposition: ClassVar[str] = "blur"

    def _configure(self, r: dict[str, Any]) -> None:
        self.radius = Uniform.parse(self.name, "radius", r["radius"], 0.5, 32.0, " pixels")
        self.mask_threshold = Uniform.parse(self.name, "mask_threshold",
                                            r.get("mask_threshold", DEFAULT_MASK_THRESHOLD), 0.0, 255.0,
                                            " (8-bit levels)").lo

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {"radius": self.radius.sample(n, generator)}

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        if len(clean):
            dy, dx, weight = disk_taps(params["radius"])
            blurred = fft_blur(self.name, clean, dy, dx, weight)
        else:
            blurred = clean.clone()
        layer = blurred.clamp_(0.0, 1.0) - clean
        magnitude = layer.abs().amax(1, keepdim=True)
        peak = per_image_max(magnitude)
        soft = magnitude / torch.where(peak > 0, peak, torch.ones_like(peak))
        return finish(clean, layer, magnitude > self.mask_threshold / 255.0, soft, params)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "preset": self.preset, "radius": self.radius.describe(),
                "mask_threshold": self.mask_threshold}
