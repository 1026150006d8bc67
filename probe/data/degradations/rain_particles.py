"""Particle rain: motion-blurred raindrops at random depths with perspective, alpha-blended over the image.

A second rain family that differs in *kind* from the co-authors' streak model (:mod:`.rain`), for
out-of-distribution tests that are not only a change of range:

=========================  =========================================  ==========================================
property                   co-authors' streaks (``rain``)             particles (``rain_particles``)
=========================  =========================================  ==========================================
streak geometry            one length, angle, width per image         per drop: length, thickness and opacity
                                                                      from its depth, angle from a perspective
                                                                      fan plus jitter
streak profile             uniform line (symmetric)                   tapered: bright head, fading tail
thickness                  one Gaussian per image                     defocus blur per depth layer (3 layers)
composite                  additive ``O = clip(B + βR)``              alpha blend ``O = B + α (c − B)``: the
                                                                      layer depends on the background
=========================  =========================================  ==========================================

The model, per image (parameters drawn per image, then per drop):

1. **Drops** — every pixel starts a drop with probability ``amount`` (same Bernoulli rule as ``rain``).
   Each drop gets a depth ``z ~ U(0, 1)`` (0 = near) and a size factor ``f = 1 − 0.75 z`` in [0.25, 1].
2. **Motion blur** — a drop falling during the exposure draws a straight streak of ``length × f`` pixels
   (``length`` given at 128 px, scaled by ``H / 128`` like ``rain``) at angle
   ``angle + fan × (2 x / W − 1) + N(0, 3°)`` from the vertical (``x`` the drop's column: streaks fan out
   from a vanishing point above the image, as seen by a camera tilted upwards). Its brightness along the
   streak rises from 0.25 at the tail (top) to 1 at the head (bottom), quadratically.
3. **Depth layers** — drops are binned by depth into three layers; each layer is blurred by a Gaussian of
   sigma ``(1.6, 1.0, 0.5) × H / 128`` pixels (near drops are out of focus and wider), with taps scaled to a
   peak of 1 so a wide streak keeps its opacity across its centre line. The drop's opacity is
   ``opacity × (0.3 + 0.7 f)``.
4. **Alpha** — ``α = 1 − exp(−A)`` with ``A`` the sum of the layers (overlapping drops saturate, α < 1).
5. **Composite** — ``O = B + α (c − B)`` with the rain brightness ``c`` (per image, grey); the layer is
   ``α (c − B)`` (so ``O = clamp(B + layer, 0, 1)`` holds exactly), the soft mask is α min–max normalised
   per image and the mask is ``soft > 50/255`` (the ``rain`` convention).

``params`` per image: ``amount, length, length_px, angle, fan, opacity, brightness, n_drops``.
Rendering is one scatter-add of every (drop, streak sample) pair per depth layer, vectorised over the batch
(no loop over images or drops); all randomness comes from the generator passed to :meth:`apply`.

>>> import torch
>>> out = RainParticles(preset="medium").apply(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0))
>>> bool((out.degraded == (out.clean + out.layer).clamp(0, 1)).all()), sorted(out.params)[:3]
(True, ['amount', 'angle', 'brightness'])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.data.degradations.base import (
    Degradation,
    Intervals,
    Uniform,
    finish,
    gaussian_taps,
    normalise01,
    parse_bool,
    separable_filter,
)
from probe.data.degradations.rain import MASK_THRESHOLD, REFERENCE_PATCH, line_taps, sample_seeds
from probe.data.types import DegradedBatch

LAYER_SIGMA = (1.6, 1.0, 0.5)  # defocus blur (pixels at 128 px) of the near, middle and far depth layer
ANGLE_JITTER = 3.0  # degrees, per-drop standard deviation of the streak angle
TAIL = 0.25  # brightness at the tail of a streak (head = 1)

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"amount": [0.001, 0.002], "length": [20, 40], "angle": [-15, 15], "fan": [0, 10],
              "opacity": [0.5, 0.8], "brightness": [0.8, 1.0]},
    "medium": {"amount": [0.002, 0.004], "length": [30, 60], "angle": [-25, 25], "fan": [5, 15],
               "opacity": [0.6, 0.9], "brightness": [0.8, 1.0]},
    "large": {"amount": [0.004, 0.006], "length": [40, 80], "angle": [-35, 35], "fan": [10, 20],
              "opacity": [0.7, 1.0], "brightness": [0.8, 1.0]},
    "random": {"amount": [0.001, 0.006], "length": [20, 80], "angle": [-35, 35], "fan": [0, 20],
               "opacity": [0.5, 1.0], "brightness": [0.8, 1.0]},
}


def drop_taps(length: Tensor, angle: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets and tapered weights of one streak per drop: ``dy, dx`` (D, T) int64 and ``weight`` (D, T).

    The anti-aliased line of :func:`.rain.line_taps` (``length`` pixels drawn, ``angle`` degrees from the
    vertical), weighted by ``TAIL + (1 − TAIL) s²`` with ``s`` in [0, 1] the position from the tail (top)
    to the head (bottom) of the streak.
    """
    rad = torch.deg2rad(angle.to(torch.float64)).view(-1, 1)
    c, s = torch.cos(rad), torch.sin(rad)
    dy, dx, weight = line_taps(length.to(torch.float64), angle)  # exactly `length` pixels long
    along = dy.to(torch.float64) * c + dx.to(torch.float64) * s  # signed distance, + towards the head
    half = (length.to(torch.float64).view(-1, 1) / 2).clamp_min(0.5)
    pos = ((along / half).clamp(-1, 1) + 1) / 2
    return dy, dx, weight * (TAIL + (1 - TAIL) * pos**2)


class RainParticles(Degradation):
    """Motion-blurred particle rain with depth and perspective (see the module docstring).

    Spec keys: ``preset`` (small | medium | large | random; default small) and overrides ``amount = [lo, hi]``
    (fraction of pixels starting a drop, in [0, 0.05]), ``length = [lo, hi]`` (streak length of the nearest
    drops, pixels at 128 px, in [1, 1024]), ``angle`` (wind angle, degrees from the vertical in [-60, 60], one
    interval or several disjoint ones), ``fan = [lo, hi]`` (perspective: angle change from the image centre to
    its side, degrees in [0, 30]), ``opacity = [lo, hi]`` (in [0, 1]), ``brightness = [lo, hi]`` (rain grey
    level c in [0, 1]), ``length_scale`` (default true: lengths and blur × H/128).

    >>> RainParticles(preset="large").describe()["fan"]
    [10.0, 20.0]
    """

    name: ClassVar[str] = "rain_particles"
    keys: ClassVar[tuple[str, ...]] = ("amount", "length", "angle", "fan", "opacity", "brightness", "length_scale")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"

    def _configure(self, r: dict[str, Any]) -> None:
        owner = self.name
        self.amount = Uniform.parse(owner, "amount", r["amount"], 0.0, 0.05)
        self.length = Uniform.parse(owner, "length", r["length"], 1.0, 1024.0, " pixels at 128 px")
        self.angle = Intervals.parse(owner, "angle", r["angle"], -60.0, 60.0, " degrees")
        self.fan = Uniform.parse(owner, "fan", r["fan"], 0.0, 30.0, " degrees")
        self.opacity = Uniform.parse(owner, "opacity", r["opacity"], 0.0, 1.0)
        self.brightness = Uniform.parse(owner, "brightness", r["brightness"], 0.0, 1.0)
        self.length_scale = parse_bool(owner, "length_scale", r.get("length_scale", True))

    def length_factor(self, height: int) -> float:
        return height / REFERENCE_PATCH if self.length_scale else 1.0

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {
            "amount": self.amount.sample(n, generator),
            "length": self.length.sample(n, generator),
            "angle": self.angle.sample(n, generator),
            "fan": self.fan.sample(n, generator),
            "opacity": self.opacity.sample(n, generator),
            "brightness": self.brightness.sample(n, generator),
        }

    def alpha(self, shape: tuple[int, int, int], params: dict[str, Tensor], generator: torch.Generator,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """α (N, 1, H, W) in [0, 1) and the number of drops per image (N,) for ``shape`` = (N, H, W)."""
        n, h, w = shape
        device = torch.device(device)
        scale = self.length_factor(h)
        image, position, _ = sample_seeds(params["amount"], h * w, generator)
        d = int(image.shape[0])
        depth = torch.rand(d, generator=generator, dtype=torch.float64)
        jitter = torch.randn(d, generator=generator, dtype=torch.float64) * ANGLE_JITTER
        f = 1 - 0.75 * depth
        col = (position % w).to(torch.float64)
        angle = params["angle"][image] + params["fan"][image] * (2 * (col + 0.5) / w - 1) + jitter
        length = (params["length"][image] * scale * f).clamp_min(1.0)
        opacity = params["opacity"][image] * (0.3 + 0.7 * f)
        layer_of = torch.clamp((depth * 3).long(), max=2)  # 0 near, 1 middle, 2 far
        total = torch.zeros(n, 1, h, w, device=device, dtype=dtype)
        for k, sigma in enumerate(LAYER_SIGMA):
            sel = torch.nonzero(layer_of == k).view(-1)
            if sel.numel() == 0:
                continue
            dy, dx, weight = drop_taps(length[sel], angle[sel])
            radius = max(1, int(math.ceil(3 * sigma * scale)))
            margin = int(max(dy.abs().max(), dx.abs().max())) + radius + 1
            hp, wp = h + 2 * margin, w + 2 * margin
            pos = position[sel]
            base = image[sel] * (hp * wp) + (pos // w + margin) * wp + (pos % w + margin)
            index = (base.view(-1, 1) + dy * wp + dx).to(device)
            contrib = (weight * opacity[sel].view(-1, 1)).to(device=device, dtype=dtype)
            canvas = torch.zeros(n * hp * wp, device=device, dtype=dtype)
            canvas.index_add_(0, index.view(-1), contrib.view(-1))
            canvas = canvas.view(n, 1, hp, wp)[:, :, margin - radius:margin + h + radius,
                                               margin - radius:margin + w + radius]
            taps = gaussian_taps(torch.tensor([sigma * scale]), 2 * radius + 1)
            taps = (taps / taps.max()).expand(n, -1)  # a defocused streak keeps its opacity across
            total += separable_filter(canvas, taps)
        alpha = -torch.expm1(-total.clamp_min(0))
        counts = torch.bincount(image, minlength=n).to(torch.float64)
        return alpha, counts

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        n, _, h, w = clean.shape
        alpha, counts = self.alpha((n, h, w), params, generator, device=clean.device, dtype=clean.dtype)
        c = params["brightness"].to(device=clean.device, dtype=clean.dtype).view(-1, 1, 1, 1)
        layer = alpha * (c - clean)
        soft = normalise01(alpha.clone())
        mask = (soft > MASK_THRESHOLD).to(clean.dtype)
        out = dict(params)
        out["length_px"] = params["length"].to(torch.float64) * self.length_factor(h)
        out["n_drops"] = counts
        return finish(clean, layer, mask, soft, out)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name, "preset": self.preset, "amount": self.amount.describe(),
            "length": self.length.describe(), "angle": self.angle.describe(), "fan": self.fan.describe(),
            "opacity": self.opacity.describe(), "brightness": self.brightness.describe(),
            "length_scale": self.length_scale, "length_reference_patch": REFERENCE_PATCH,
            "layer_sigma": list(LAYER_SIGMA), "mask_threshold": MASK_THRESHOLD,
        }


__all__ = ["PRESETS", "RainParticles", "drop_taps"]
