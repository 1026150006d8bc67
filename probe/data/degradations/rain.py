"""Rain streaks: the co-authors' streak model (SCIENCE.md), vectorised over the batch in torch.

The model, per image (every streak of one image shares its length, angle and width):

1. **Seeds** — every pixel independently starts a streak with probability ``amount`` (the per-pixel rule
   "u ~ U(0, 1), keep u > 1 − amount"); a seed's value is its u, i.e. U(1 − amount, 1). The seeds are drawn
   as the gaps of that Bernoulli process (geometric gaps): the same distribution with ~``amount`` × fewer
   random numbers. Seeds are spread by the 3 × 3 kernel ``[[0, .1, 0], [.1, 8, .1], [0, .1, 0]]`` of the
   widely used rain script.
2. **Streak kernel** — a line through the seed at ``angle`` degrees from the vertical (positive =
   counter-clockwise on screen, as in OpenCV: the streak runs from upper left to lower right). Its drawn
   length follows ``length_rule``: ``"window"`` (default, the co-authors' generator: the L-pixel diagonal
   rotated inside its L × L window, so ``L / max(|cos t|, |sin t|)`` pixels — L at 0°, 1.155 L at ±30°,
   √2 L at ±45°) or ``"exact"`` (L pixels at every angle). Drawn with one sample per pixel step along the
   major axis and linear interpolation across it (anti-aliased), then blurred by OpenCV's ``width`` ×
   ``width`` Gaussian (its fixed table for widths <= 7, else sigma ``0.3 ((width − 1) / 2 − 1) + 0.8``).
3. **Rain layer** ``R = seeds ⊛ kernel`` (zero outside the image: streaks leave the frame), min–max
   normalised to [0, 1] per image.
4. **Composite** ``O = clamp(B + beta * R, 0, 1)``; mask = ``R > 50/255``, soft mask = ``R``.

**Patch-size rule** (``scale``; presets are given at a 128 px patch, s = H / 128):

========  ===============================  =========================================================
scale     applied                          effect
========  ===============================  =========================================================
length    length × s (default)             the probe's historical rule: streak count per pixel fixed,
                                           covered fraction shrinks with s (``small``: 13 % at 128 px,
                                           8 % at 64 px, 7 % at 48 px)
none      nothing (pixels)                 the co-authors' code: covered fraction ~constant (13–14 %),
                                           but streaks are long relative to a small patch
zoom      length × s, width w → w' =       streak geometry zoomed with the patch, covered fraction kept
          odd(w s) >= 1, amount ×          (``small`` 13.1 / 13.5 / 13.9 %, ``medium`` 38 / 41 / 42 %,
          (w + 1) / (s (w' + 1))           ``large`` 62 / 67 / 69 % at 128 / 64 / 48 px; measured)
========  ===============================  =========================================================

``length_scale = false`` is the older spelling of ``scale = "none"``. A study states its rule in its
degradation tables (the default ``length`` otherwise); ``describe()`` records it.

**Differences from the co-authors' generator** (SCIENCE.md) and how they are handled: the length rule
(matched, default); OpenCV's small-Gaussian table (matched); integer lengths and angles (``integer = true``
draws them as integers, default false: continuous); the aliased bilinear kernel (values 0.5–1 along the
line; not matched: ours is anti-aliased with weight 1 per step), reflected seed borders (``border =
"reflect"``; default ``"zero"``: zero outside the image, so density falls off within half a streak of the
edge) and the uint8 truncation of the layer (not matched: float). ``beta`` defaults to [0.6, 1.0] (their
early config; their current code uses [0.7, 1.0]).

``params`` holds ``amount, width, length`` (as specified, at 128 px), ``length_px`` (nominal L in pixels
after the patch-size rule), ``streak_px`` (pixels drawn, after the length rule), ``width_px``,
``amount_px``, ``angle`` (degrees) and ``beta`` per image. Rendering: :mod:`.streaks`. The layer is a
broadcast (stride-0) view of the grey ``beta * R`` over the 3 channels: clone it before writing into it.

>>> import torch
>>> rain = Rain(preset="medium", angle=[[-40, -20], [20, 40]])
>>> out = rain.apply(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0))
>>> out.params["length_px"].tolist() == (out.params["length"] * 64 / 128).tolist()
True
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.data.degradations.base import Choice, Degradation, Intervals, Uniform, finish, parse_bool, parse_kind
from probe.data.degradations.streaks import (  # noqa: F401  (re-exported: the streak model's public names)
    BORDERS,
    CPU_CHUNK,
    LENGTH_RULES,
    MASK_THRESHOLD,
    MAX_WIDTH,
    OPENCV_SMALL_GAUSSIAN,
    REFERENCE_PATCH,
    SCALE_RULES,
    SEED_SPREAD,
    drawn_length,
    line_taps,
    opencv_gaussian_taps,
    opencv_sigma,
    render_rain,
    sample_seeds,
    streak_kernel,
)
from probe.data.types import DegradedBatch
from probe.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"amount": [0.002, 0.004], "width": {"values": [1, 3], "probs": [0.5, 0.5]},
              "length": [25, 35], "angle": [-10, 10]},
    "medium": {"amount": [0.005, 0.007], "width": {"values": [3, 5, 7], "probs": [0.25, 0.5, 0.25]},
               "length": [35, 45], "angle": [-30, 30]},
    "large": {"amount": [0.008, 0.010], "width": {"values": [7, 9], "probs": [0.5, 0.5]},
              "length": [45, 55], "angle": [-60, 60]},
    "random": {"amount": [0.002, 0.010], "width": [1, 3, 5, 7, 9], "length": [25, 55], "angle": [-60, 60]},
}


class Rain(Degradation):
    """Rain streaks (SCIENCE.md streak model; see the module docstring).

    Spec keys: ``preset`` (small | medium | large | random; default small) and overrides ``amount = [lo, hi]``
    (fraction of pixels starting a streak, in [0, 1]), ``width = [..]`` or ``{values = [..], probs = [..]}``
    (odd kernel sizes 1..31), ``length = [lo, hi]`` (pixels at 128 px, >= 1), ``angle = [lo, hi]`` or
    ``[[lo, hi], [lo, hi], ...]`` (degrees from vertical in [-90, 90], disjoint), ``beta = [lo, hi]`` (in
    [0, 1], default [0.6, 1.0]), ``length_rule`` (window | exact; default window), ``scale`` (length | none |
    zoom; default length), ``length_scale`` (bool, false = ``scale = "none"``), ``integer`` (bool, default
    false: lengths and angles drawn as integers), ``border`` (zero | reflect; default zero).

    >>> rain = Rain(preset="small", amount=[0.01, 0.02])
    >>> rain.describe()["amount"], rain.describe()["width"], rain.describe()["length_rule"]
    ([0.01, 0.02], {'values': [1, 3], 'probs': [0.5, 0.5]}, 'window')
    """

    name: ClassVar[str] = "rain"
    keys: ClassVar[tuple[str, ...]] = ("amount", "width", "length", "angle", "beta", "length_rule", "scale",
                                       "length_scale", "integer", "border")
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str | None] = "small"

    def _configure(self, r: dict[str, Any]) -> None:
        owner = self.name
        self.amount = Uniform.parse(owner, "amount", r["amount"], 0.0, 1.0)
        self.width = Choice.parse(owner, "width", r["width"],
                                  check=lambda v: float(v).is_integer() and int(v) % 2 == 1 and 1 <= v <= MAX_WIDTH,
                                  allowed_values=f"odd integers in [1, {MAX_WIDTH}]")
        self.length = Uniform.parse(owner, "length", r["length"], 1.0, 4096.0, " pixels at 128 px")
        self.angle = Intervals.parse(owner, "angle", r["angle"], -90.0, 90.0, " degrees")
        self.beta = Uniform.parse(owner, "beta", r.get("beta", [0.6, 1.0]), 0.0, 1.0)
        self.length_rule = parse_kind(owner, "length_rule", r.get("length_rule", "window"), LENGTH_RULES)
        self.integer = parse_bool(owner, "integer", r.get("integer", False))
        self.border = parse_kind(owner, "border", r.get("border", "zero"), BORDERS)
        scale = parse_kind(owner, "scale", r.get("scale", "length"), SCALE_RULES)
        if "length_scale" in r:
            legacy = "length" if parse_bool(owner, "length_scale", r["length_scale"]) else "none"
            if "scale" in r and scale != legacy:
                raise ConfigError(f"{owner}: 'length_scale' = {r['length_scale']!r} contradicts 'scale' = "
                                  f"{scale!r}; give 'scale' only")
            scale = legacy
        self.scale = scale

    @property
    def length_scale(self) -> bool:
        return self.scale != "none"

    def length_factor(self, height: int) -> float:
        """Pixels per specified length unit for images of ``height`` rows (``height / 128`` or 1)."""
        return height / REFERENCE_PATCH if self.scale != "none" else 1.0

    def applied(self, params: dict[str, Tensor], height: int) -> dict[str, Tensor]:
        """Per-image ``length_px``, ``streak_px``, ``width_px`` and ``amount_px`` actually used on ``height``-row
        images (the patch-size rule ``scale`` and the ``length_rule``), float64 CPU tensors."""
        s = height / REFERENCE_PATCH
        length_px = params["length"].to(torch.float64) * self.length_factor(height)
        width_px, amount_px = params["width"].to(torch.float64), params["amount"].to(torch.float64)
        if self.scale == "zoom":
            zoomed = (2 * torch.round((width_px * s - 1) / 2) + 1).clamp(1, MAX_WIDTH)
            # covered fraction ~ amount x length x (width + 1): keep it at its 128 px value
            amount_px = (amount_px / s * (width_px + 1) / (zoomed + 1)).clamp(0, 1)
            width_px = zoomed
        return {"length_px": length_px, "streak_px": drawn_length(length_px, params["angle"], self.length_rule),
                "width_px": width_px, "amount_px": amount_px}

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        p = {
            "amount": self.amount.sample(n, generator),
            "width": self.width.sample(n, generator),
            "length": self.length.sample(n, generator),
            "angle": self.angle.sample(n, generator),
            "beta": self.beta.sample(n, generator),
        }
        if self.integer:  # the co-authors draw integer lengths and angles
            p["length"] = p["length"].round().clamp(self.length.lo, self.length.hi)
            p["angle"] = p["angle"].round()
        return p

    def rain_layer(self, shape: tuple[int, int, int], params: dict[str, Tensor], generator: torch.Generator,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """R (N, 1, H, W) in [0, 1] for ``shape`` = (N, H, W) and per-image ``params`` (draws the seeds)."""
        n, h, w = shape
        a = self.applied(params, h)
        image, position, value = sample_seeds(a["amount_px"], h * w, generator)
        return render_rain(shape, image, position, value, a["length_px"], params["angle"], a["width_px"],
                           device=device, dtype=dtype, length_rule=self.length_rule, border=self.border)

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        n, _, h, w = clean.shape
        r = self.rain_layer((n, h, w), params, generator, device=clean.device, dtype=clean.dtype)
        beta = params["beta"].to(device=clean.device, dtype=clean.dtype).view(-1, 1, 1, 1)
        layer = (beta * r).expand(-1, 3, -1, -1)  # grey rain: a broadcast view (clone() before writing to it)
        out = {**params, **self.applied(params, h)}
        mask = torch.gt(r, MASK_THRESHOLD, out=torch.empty_like(r))
        return finish(clean, layer, mask, r, out)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name, "preset": self.preset, "amount": self.amount.describe(),
            "width": self.width.describe(), "length": self.length.describe(), "angle": self.angle.describe(),
            "beta": self.beta.describe(), "length_rule": self.length_rule, "scale": self.scale,
            "length_scale": self.length_scale, "integer": self.integer, "border": self.border,
            "length_reference_patch": REFERENCE_PATCH, "mask_threshold": MASK_THRESHOLD,
        }
