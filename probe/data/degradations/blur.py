"""Blur: Gaussian or linear motion blur, with the ground-truth layer ``D = blurred - B``.

``kind = "gaussian"``: isotropic Gaussian of ``sigma`` pixels, truncated at ±ceil(3 sigma), separable.
``kind = "motion"``: a straight motion path of ``size`` pixels at ``angle`` degrees from the vertical (the
rain streak convention: positive = lower end to the right), the anti-aliased line of
:func:`probe.data.degradations.rain.line_taps` normalised to sum 1, applied by FFT on the padded image.
Both use reflect padding (the kernel radius must be smaller than the image). Sizes are in pixels (not
scaled with the patch).

Layer ``D = blurred - B`` (``O = clamp(B + D, 0, 1)`` exactly); mask where ``max_c |D| > mask_threshold/255``
(default 10 levels of 255: edges that visibly changed), soft mask ``max_c |D|`` normalised per image.

>>> import torch
>>> blur = Blur(kind="motion", size=[9, 9], angle=[90, 90])
>>> out = blur.apply(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0))
>>> out.params["size"].tolist(), out.params["angle"].tolist()
([9.0, 9.0], [90.0, 90.0])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from probe.data.degradations.base import (
    Degradation,
    Intervals,
    Uniform,
    finish,
    gaussian_taps,
    parse_kind,
    per_image_max,
    separable_filter,
)
from probe.data.degradations.rain import line_taps
from probe.data.types import DegradedBatch
from probe.errors import ConfigError, DataError

KINDS = ("gaussian", "motion")
KIND_KEYS = {"gaussian": ("sigma",), "motion": ("size", "angle")}
DEFAULT_MASK_THRESHOLD = 10.0  # 8-bit levels

PRESETS: dict[str, dict[str, Any]] = {  # per preset, values for both kinds (only the chosen kind's are used)
    "small": {"sigma": [0.5, 1.5], "size": [5, 9], "angle": [-90, 90]},
    "medium": {"sigma": [1.5, 2.5], "size": [9, 15], "angle": [-90, 90]},
    "large": {"sigma": [2.5, 3.5], "size": [15, 21], "angle": [-90, 90]},
    "random": {"sigma": [0.5, 3.5], "size": [5, 21], "angle": [-90, 90]},
}


class Blur(Degradation):
    """Gaussian or motion blur (see the module docstring).

    Spec keys: ``preset`` (small | medium | large | random; default small), ``kind`` (gaussian | motion;
    default gaussian), ``sigma = [lo, hi]`` (gaussian, pixels in [0, 32]), ``size = [lo, hi]`` (motion path
    length in pixels, [1, 129]), ``angle = [lo, hi]`` or ``[[lo, hi], ...]`` (motion, degrees in
    [-90, 90]), ``mask_threshold`` (8-bit levels, default 10).

    >>> Blur(preset="large").describe()["sigma"]
    [2.5, 3.5]
    """

    name: ClassVar[str] = "blur"
    keys: ClassVar[tuple[str, ...]] = ("kind", "sigma", "size", "angle", "mask_threshold")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"
    decomposition: ClassVar[str] = "blur"

    def _resolve(self, preset: str | None, spec: dict[str, Any]) -> dict[str, Any]:
        kind = parse_kind(self.name, "kind", spec.get("kind", "gaussian"), KINDS)
        other = [k for kk, keys in KIND_KEYS.items() if kk != kind for k in keys if k in spec]
        if other:
            raise ConfigError(f"{self.name}: {other[0]!r} does not apply to kind={kind!r}; "
                              f"use {', '.join(map(repr, KIND_KEYS[kind]))}")
        table = self.presets.get(preset, {}) if preset else {}
        out = {"kind": kind, "mask_threshold": spec.get("mask_threshold", DEFAULT_MASK_THRESHOLD)}
        out.update({k: spec.get(k, table.get(k)) for k in KIND_KEYS[kind]})
        return out

    def _configure(self, r: dict[str, Any]) -> None:
        self.kind = r["kind"]
        if self.kind == "gaussian":
            self.sigma = Uniform.parse(self.name, "sigma", r["sigma"], 0.0, 32.0, " pixels")
        else:
            self.size = Uniform.parse(self.name, "size", r["size"], 1.0, 129.0, " pixels")
            self.angle = Intervals.parse(self.name, "angle", r["angle"], -90.0, 90.0, " degrees")
        self.mask_threshold = Uniform.parse(self.name, "mask_threshold", r["mask_threshold"], 0.0, 255.0,
                                            " (8-bit levels)").lo

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        if self.kind == "gaussian":
            return {"sigma": self.sigma.sample(n, generator)}
        return {"size": self.size.sample(n, generator), "angle": self.angle.sample(n, generator)}

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        n, _, h, w = clean.shape
        if self.kind == "gaussian":
            sigma = params["sigma"].to(torch.float64)
            radius = int(math.ceil(3 * float(sigma.max()))) if n else 0
            self._check_radius(radius, h, w)
            if radius == 0:
                blurred = clean.clone()
            else:
                taps = gaussian_taps(sigma, 2 * radius + 1, radius=torch.ceil(3 * sigma))
                padded = F.pad(clean, (radius,) * 4, mode="reflect")
                blurred = separable_filter(padded, taps)
        else:
            blurred = self._motion(clean, params["size"], params["angle"])
        layer = blurred.clamp_(0.0, 1.0) - clean
        magnitude = layer.abs().amax(1, keepdim=True)
        peak = per_image_max(magnitude)
        soft = magnitude / torch.where(peak > 0, peak, torch.ones_like(peak))
        return finish(clean, layer, magnitude > self.mask_threshold / 255.0, soft, params)

    def _motion(self, clean: Tensor, size: Tensor, angle: Tensor) -> Tensor:
        dy, dx, weight = line_taps(size, angle)
        return fft_blur(self.name, clean, dy, dx, weight)

    def _check_radius(self, radius: int, h: int, w: int) -> None:
        check_radius(self.name, radius, h, w)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.name, "preset": self.preset, "kind": self.kind,
                               "mask_threshold": self.mask_threshold}
        if self.kind == "gaussian":
            out["sigma"] = self.sigma.describe()
        else:
            out["size"] = self.size.describe()
            out["angle"] = self.angle.describe()
        return out


def check_radius(owner: str, radius: int, h: int, w: int) -> None:
    """Raise :class:`DataError` when a kernel of ``radius`` px cannot be reflect-padded on an h×w image."""
    if radius >= min(h, w):
        raise DataError(f"{owner}: kernel radius {radius} px needs images larger than {h}x{w} "
                        "(reflect padding); use smaller 'sigma'/'size'/'radius' or larger patches")


def fft_blur(owner: str, clean: Tensor, dy: Tensor, dx: Tensor, weight: Tensor) -> Tensor:
    """Blur each image of (N, 3, H, W) by its own sparse kernel, given as taps ``dy, dx`` (N, T) int offsets
    with ``weight`` (N, T) (normalised here to sum 1 per image; zero weights are padding). Applied by FFT to
    the reflect-padded batch: circular convolution on the padded frame is exact on the crop because the pad
    is at least the kernel radius. Returns (N, 3, H, W) on the images' device and dtype."""
    n, c, h, w = clean.shape
    if n == 0:
        return clean.clone()
    weight = weight.to(torch.float64)
    weight = weight / weight.sum(1, keepdim=True)
    radius = int(max(dy.abs().max(), dx.abs().max()))
    check_radius(owner, radius, h, w)
    padded = F.pad(clean, (radius,) * 4, mode="reflect") if radius else clean
    hp, wp = padded.shape[-2:]
    kernel = torch.zeros(n, hp * wp, dtype=torch.float64)
    kernel.scatter_add_(1, (dy.long() % hp) * wp + (dx.long() % wp), weight)
    kernel = kernel.view(n, 1, hp, wp).to(device=clean.device, dtype=clean.dtype)
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(kernel)
    out = torch.fft.irfft2(spectrum, s=(hp, wp))
    return out[..., radius:radius + h, radius:radius + w].contiguous()
