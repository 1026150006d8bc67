"""``dead_leaves``: the dead-leaves model with one continuous complexity knob.

Opaque disks with radii drawn from the scale-invariant law p(r) ∝ r⁻³ on [r_min, r_max] fall on top of
each other. One number, ``complexity`` in [0, 1], moves every ingredient in the same direction:

=================  ======================  ==========================================================
ingredient         complexity = 0          complexity = 1
=================  ======================  ==========================================================
r_min, r_max       15 %, 60 % of the side  1 %, 15 % of the side (r_min >= 1 px)
number of disks    ~15                     ~1700 at 256 px (enough for ~3 layers; capped at 2500)
edge blur sigma    side / 64 px            0
texture amplitude  0                       0.2 (sine gratings inside each disk)
=================  ======================  ==========================================================

so sweeping it sweeps PNG/JPEG bits per pixel, gradient energy, entropy and spectral slope monotonically
(see ``tests/test_complexity.py``). ``texture`` (None = follow ``complexity``) fixes the texture amount on
its own axis. The same seed gives the same underlying random numbers at every complexity, so two knob
values differ only by the knob.

>>> from probe.data.backgrounds.dead_leaves import DeadLeaves
>>> DeadLeaves(patch=32, seed=0, complexity=0.8).images(3).shape
torch.Size([3, 3, 64, 64])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from probe.data.backgrounds.base import BackgroundSource, Option, float_in, optional

_LAYERS = 3.0  # expected number of disks covering a pixel
_MAX_SHAPES = 2500  # random numbers drawn per image (independent of complexity: common random numbers)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


class DeadLeaves(BackgroundSource):
    """Dead-leaves images whose complexity is set by one knob (see the module docstring)."""

    name = "dead_leaves"
    options = {
        "complexity": Option(0.5, float_in(0.0, 1.0), "a float in [0, 1]"),
        "texture": Option(None, optional(float_in(0.0, 1.0)), "None (follow complexity) or a float in [0, 1]"),
    }

    def _shape_law(self) -> tuple[float, float, int]:
        """(r_min, r_max, number of disks) in pixels for the current complexity and size."""
        c, s = self.params["complexity"], self.size
        r_min = max(1.0, s * _lerp(0.15, 0.01, c))
        r_max = max(r_min * 1.5, s * _lerp(0.60, 0.15, c))
        q = (r_min / r_max) ** 2
        mean_area = math.pi * 2 * r_min**2 * math.log(r_max / r_min) / (1 - q)  # E[pi r^2] under r^-3
        n = int(min(_MAX_SHAPES, math.ceil(_LAYERS * s * s / mean_area)))
        return r_min, r_max, n

    def _generate(self, n: int, split: str) -> Tensor:
        c = self.params["complexity"]
        tex = c if self.params["texture"] is None else self.params["texture"]
        r_min, r_max, n_shapes = self._shape_law()
        s = self.size
        sigma = (1.0 - c) * s / 64.0
        out = []
        for i in range(n):
            u = self._rng(split, i).random((_MAX_SHAPES + 1, 10))  # row 0: the uncovered ground
            out.append(self._render(u, n_shapes, r_min, r_max, tex))
        imgs = torch.stack(out) if out else torch.empty(0, 3, s, s)
        if sigma > 0.05 and len(imgs):
            imgs = _gaussian_blur(imgs, sigma)
        return imgs

    def _render(self, u: np.ndarray, n: int, r_min: float, r_max: float, tex: float) -> Tensor:
        s = self.size
        shapes = u[1:n + 1]
        a, b = r_min**-2, r_max**-2
        r = (a - shapes[:, 0] * (a - b)) ** -0.5  # inverse CDF of p(r) ∝ r^-3 on [r_min, r_max]
        cx = shapes[:, 1] * s
        cy = shapes[:, 2] * s
        label = _paint(cx, cy, r, s) + 1  # 0 = ground, k = disk k-1 (later disks on top)
        used = u[: n + 1]
        colour = torch.from_numpy(used[:, 3:6]).float()
        # one sine grating per disk: frequency 0.03–0.25 cycles/px, random orientation and phase
        freq = torch.from_numpy(0.03 + 0.22 * used[:, 6]).float()
        theta = torch.from_numpy(used[:, 7] * math.pi).float()
        phase = torch.from_numpy(used[:, 8] * 2 * math.pi).float()
        amp = torch.from_numpy(tex * 0.2 * (0.5 + 0.5 * used[:, 9])).float()
        img = colour[label].permute(2, 0, 1)  # (3, S, S)
        if tex > 0:
            coords = torch.arange(s, dtype=torch.float32)
            fx = (freq * torch.cos(theta))[label]
            fy = (freq * torch.sin(theta))[label]
            wave = torch.sin(2 * math.pi * (fx * coords[None, :] + fy * coords[:, None]) + phase[label])
            img = img + (amp[label] * wave)[None]
        return img.clamp_(0.0, 1.0)


def _paint(cx: np.ndarray, cy: np.ndarray, r: np.ndarray, s: int) -> Tensor:
    """(S, S) int64 map of the topmost disk covering each pixel centre (-1 = none).

    Disks are grouped by bounding-box size (powers of two) and every group is rasterised at once with a
    scatter-max, so the cost is proportional to the painted area, not to (disks × pixels).
    """
    label = torch.full((s * s,), -1, dtype=torch.int64)
    if len(r) == 0:
        return label.view(s, s)
    half = np.maximum(1, np.ceil(r)).astype(np.int64)
    bucket = 2 ** np.ceil(np.log2(half)).astype(np.int64)
    for b in np.unique(bucket):
        sel = np.nonzero(bucket == b)[0]
        k = torch.from_numpy(sel)
        x = torch.from_numpy(cx[sel]).float()
        y = torch.from_numpy(cy[sel]).float()
        rr = torch.from_numpy(r[sel]).float()
        if 2 * b + 1 >= s:  # boxes as large as the image: use the image grid itself
            px = py = torch.arange(s).expand(len(sel), s)
        else:
            offs = torch.arange(-int(b), int(b) + 1)
            px = torch.floor(x).long()[:, None] + offs  # (k, B)
            py = torch.floor(y).long()[:, None] + offs
        dx2 = (px + 0.5 - x[:, None]) ** 2
        dy2 = (py + 0.5 - y[:, None]) ** 2
        inside = (dy2[:, :, None] + dx2[:, None, :]) <= (rr**2)[:, None, None]  # (k, B, B)
        inside &= ((px >= 0) & (px < s))[:, None, :] & ((py >= 0) & (py < s))[:, :, None]
        flat = py[:, :, None] * s + px[:, None, :]
        idx = k[:, None, None].expand_as(flat)
        label.scatter_reduce_(0, flat[inside], idx[inside], reduce="amax")
    return label.view(s, s)


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    pad = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = torch.nn.functional.conv2d(pad, k, groups=3)
    return torch.nn.functional.conv2d(out, k.transpose(-1, -2), groups=3)
