"""Rain streaks: the co-authors' streak model (SCIENCE.md), vectorised over the batch in torch.

The model, per image (every streak of one image shares its length, angle and width):

1. **Seeds** — every pixel independently starts a streak with probability ``amount`` (the per-pixel rule
   "u ~ U(0, 1), keep u > 1 − amount"); a seed's value is its u, i.e. U(1 − amount, 1). The seeds are drawn
   as the gaps of that Bernoulli process (geometric gaps): the same distribution with ~``amount`` × fewer
   random numbers. Seeds are spread by the 3 × 3 kernel ``[[0, .1, 0], [.1, 8, .1], [0, .1, 0]]`` of the
   widely used rain script.
2. **Streak kernel** — a line of ``length`` pixels through the seed at ``angle`` degrees from the vertical
   (positive = counter-clockwise on screen, as in OpenCV: the streak runs from upper left to lower right),
   drawn with one sample per pixel step along its major axis and linear interpolation across it
   (anti-aliased, fractional end samples, so length is continuous), then blurred by a ``width`` × ``width``
   Gaussian with OpenCV's sigma for that size, ``0.3 * ((width - 1) / 2 - 1) + 0.8`` (width 1 = no blur).
3. **Rain layer** ``R = seeds ⊛ kernel`` (zero outside the image: streaks leave the frame), min–max
   normalised to [0, 1] per image.
4. **Composite** ``O = clamp(B + beta * R, 0, 1)``; mask = ``R > 50/255``, soft mask = ``R``.

Lengths are given at a 128 px reference patch and scaled by ``H / 128`` (``length_scale = false`` keeps
them in pixels); widths are never scaled. ``params`` holds ``amount, width, length`` (as specified, at
128 px), ``length_px`` (the pixels actually drawn), ``angle`` (degrees) and ``beta`` per image.

Rendering is one scatter-add of every streak sample of the batch into a padded canvas, one 5-tap spread and
a separable Gaussian per width group (images sorted by width; a loop over the few distinct widths and their
taps, never over images, streaks or pixels); it runs on the device of the images (CPU or CUDA) and equals
the FFT convolution of the seed map with the dense kernel of :func:`streak_kernel` (tested). On the CPU the
batch is rendered in chunks of :data:`CPU_CHUNK` images to keep temporaries small. The layer is returned as
a broadcast (stride-0) view of the grey ``beta * R`` over the 3 channels: clone it before writing into it.

>>> import torch
>>> rain = Rain(preset="medium", angle=[[-40, -20], [20, 40]])
>>> out = rain.apply(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0))
>>> out.params["length_px"].tolist() == (out.params["length"] * 64 / 128).tolist()
True
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from probe.data.degradations.base import (
    Choice,
    Degradation,
    Intervals,
    Uniform,
    finish,
    gaussian_taps,
    normalise01,
    parse_bool,
    separable_filter,
)
from probe.data.types import DegradedBatch

REFERENCE_PATCH = 128  # lengths of the presets are given at this patch size
MASK_THRESHOLD = 50 / 255  # binary rain mask: R > 50/255 (SCIENCE.md)
SPREAD_CENTRE, SPREAD_SIDE = 8.0, 0.1  # the 3 x 3 seed spread [[0, .1, 0], [.1, 8, .1], [0, .1, 0]]
SEED_SPREAD = ((0.0, SPREAD_SIDE, 0.0), (SPREAD_SIDE, SPREAD_CENTRE, SPREAD_SIDE), (0.0, SPREAD_SIDE, 0.0))
MAX_WIDTH = 31
CPU_CHUNK = 32  # images rendered together on the CPU (bounded, cache-friendly temporaries)

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"amount": [0.002, 0.004], "width": {"values": [1, 3], "probs": [0.5, 0.5]},
              "length": [25, 35], "angle": [-10, 10]},
    "medium": {"amount": [0.005, 0.007], "width": {"values": [3, 5, 7], "probs": [0.25, 0.5, 0.25]},
               "length": [35, 45], "angle": [-30, 30]},
    "large": {"amount": [0.008, 0.010], "width": {"values": [7, 9], "probs": [0.5, 0.5]},
              "length": [45, 55], "angle": [-60, 60]},
    "random": {"amount": [0.002, 0.010], "width": [1, 3, 5, 7, 9], "length": [25, 55], "angle": [-60, 60]},
}


def opencv_sigma(width: Tensor) -> Tensor:
    """Sigma OpenCV's ``GaussianBlur`` uses for an odd ``width`` × ``width`` kernel with sigma = 0."""
    return 0.3 * ((width.to(torch.float64) - 1) * 0.5 - 1) + 0.8


def line_taps(length: Tensor, angle: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sample offsets of one anti-aliased line per image, centred on (0, 0).

    ``length`` (N,) in pixels and ``angle`` (N,) in degrees from the vertical (positive: lower end to the
    right). Returns ``dy, dx`` (N, T) int64 and ``weight`` (N, T) float64, T = 2 (2J + 1), zero-padded. One
    sample per pixel step ``j`` along the major axis (weight 1, fractional at the ends), split linearly
    between the two pixels across it. Point-symmetric, so convolution and correlation agree.

    >>> dy, dx, w = line_taps(torch.tensor([3.0]), torch.tensor([0.0]))
    >>> sorted((int(a), int(b)) for a, b, c in zip(dy[0], dx[0], w[0]) if c > 0)
    [(-1, 0), (0, 0), (1, 0)]
    """
    # small per-image tables: numpy is cheaper than torch per operation here
    theta = np.deg2rad(angle.detach().cpu().to(torch.float64).numpy())
    c, s = np.cos(theta), np.sin(theta)
    vertical = (np.abs(c) >= np.abs(s))[:, None]
    half = (length.detach().cpu().to(torch.float64).numpy() * np.maximum(np.abs(c), np.abs(s)) - 1) / 2
    big = int(np.floor(half.max())) + 1 if half.size else 0
    j = np.arange(-big, big + 1, dtype=np.float64)
    w_major = np.clip(half[:, None] + 1 - np.abs(j), 0, 1)  # (N, 2J+1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(vertical[:, 0], s / c, c / s)[:, None]
    q = j * slope
    q0 = np.floor(q)
    frac = q - q0
    jj = np.broadcast_to(j, q0.shape).astype(np.int64)
    q0 = q0.astype(np.int64)
    dy = np.concatenate([np.where(vertical, jj, q0), np.where(vertical, jj, q0 + 1)], 1)
    dx = np.concatenate([np.where(vertical, q0, jj), np.where(vertical, q0 + 1, jj)], 1)
    weight = np.concatenate([w_major * (1 - frac), w_major * frac], 1)
    return torch.from_numpy(dy), torch.from_numpy(dx), torch.from_numpy(weight)


def streak_kernel(length: Tensor, angle: Tensor, width: Tensor | None = None, spread: bool = False) -> Tensor:
    """Dense per-image streak kernels (N, 1, K, K), K odd, centred: the line of :func:`line_taps`, blurred
    by the ``width`` Gaussian (OpenCV sigma) and, with ``spread``, the 3 × 3 seed spread — the kernel
    R = seeds ⊛ kernel uses. Built as a batch with coordinate math (used by tests, figures, motion blur).

    >>> streak_kernel(torch.tensor([9.0, 20.0]), torch.tensor([0.0, 45.0]), torch.tensor([3, 1])).shape
    torch.Size([2, 1, 17, 17])
    """
    n = int(length.shape[0])
    dy, dx, weight = line_taps(length, angle)
    wmax = 1 if width is None else int(width.max())
    radius = int(max(dy.abs().max(), dx.abs().max())) + wmax // 2 + (1 if spread else 0)
    size = 2 * radius + 1
    flat = torch.zeros(n, size * size, dtype=torch.float64)
    flat.scatter_add_(1, (dy + radius) * size + (dx + radius), weight)
    kernel = flat.view(n, 1, size, size)
    if spread:
        k3 = torch.tensor(SEED_SPREAD, dtype=torch.float64).view(1, 1, 3, 3)
        kernel = torch.nn.functional.conv2d(kernel, k3, padding=1)
    if width is not None and wmax > 1:
        taps = gaussian_taps(opencv_sigma(width), wmax, radius=width.long() // 2)
        padded = torch.nn.functional.pad(kernel, (wmax // 2,) * 4)
        kernel = separable_filter(padded, taps)
    return kernel


def sample_seeds(amount: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Seeds of N Bernoulli(``amount``) pixel processes of ``count`` pixels each, via geometric gaps.

    Returns ``(image, position, value)`` 1-D tensors (CPU): image index, flat pixel index in [0, count), and
    seed value ~ U(1 − amount, 1]. Same law as thresholding one uniform per pixel, with ~amount × fewer draws:
    the gap to the next seed is ``floor(log(U) / log(1 − amount)) + 1`` (geometric).

    >>> image, position, value = sample_seeds(torch.tensor([0.01, 0.02]), 64 * 64, torch.Generator().manual_seed(0))
    >>> int((image == 0).sum()), int((image == 1).sum())  # about 41 and 82 expected
    (46, 79)
    """
    p = amount.detach().cpu().to(torch.float64).clamp(0, 1).numpy()
    n = int(p.shape[0])
    mu = float(p.max()) * count if n else 0.0
    chunk = max(1, min(count + 1, int(math.ceil(mu + 6 * math.sqrt(mu) + 16))))
    with np.errstate(divide="ignore"):
        log_q = np.log1p(-p)[:, None]
    last = np.full(n, -1, dtype=np.int64)
    parts = []
    while n:
        u = 1 - torch.rand(n, chunk, generator=generator, dtype=torch.float64).numpy()  # (0, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            gaps = np.floor(np.log(u) / log_q) + 1
        gaps = np.where(p[:, None] > 0, np.nan_to_num(gaps, nan=count + 1.0), count + 1.0)
        pos = last[:, None] + np.clip(gaps, 1, count + 1).astype(np.int64).cumsum(1)
        parts.append(pos)
        last = pos[:, -1]
        if bool((last >= count).all()):
            break
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0, dtype=torch.float64)
    pos = np.concatenate(parts, 1)
    image, k = np.nonzero(pos < count)
    position = pos[image, k]
    value = 1 - p[image] * torch.rand(int(image.shape[0]), generator=generator, dtype=torch.float64).numpy()
    return torch.from_numpy(image.astype(np.int64)), torch.from_numpy(position), torch.from_numpy(value)


def render_rain(shape: tuple[int, int, int], image: Tensor, position: Tensor, value: Tensor, length: Tensor,
                angle: Tensor, width: Tensor, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32, chunk: int | None = None) -> Tensor:
    """The normalised rain layer R (N, 1, H, W) in [0, 1] from seeds and per-image streak parameters.

    ``shape`` = (N, H, W); seeds as returned by :func:`sample_seeds` (any order); ``length`` in pixels,
    ``angle`` in degrees, ``width`` odd ints (N,). Equals ``normalise(seedmap ⊛ streak_kernel(length, angle,
    width, spread=True))`` with zero padding ('same' size). On the CPU the batch is rendered in chunks of
    ``chunk`` images (default :data:`CPU_CHUNK`) so the temporaries stay small and cache-resident; each chunk
    is fully vectorised.
    """
    n, h, w = shape
    device = torch.device(device)
    out = torch.empty(n, 1, h, w, device=device, dtype=dtype)
    if chunk is None:
        chunk = CPU_CHUNK if device.type == "cpu" else max(n, 1)
    if image.numel() > 1 and not bool((image[1:] >= image[:-1]).all()):  # seeds given in any order
        perm = torch.sort(image, stable=True).indices
        image, position, value = image[perm], position[perm], value[perm]
    bounds = torch.searchsorted(image, torch.arange(0, n + chunk, chunk).clamp_(max=n)).tolist()
    for k, first in enumerate(range(0, n, chunk)):
        last = min(first + chunk, n)
        sl = slice(bounds[k], bounds[k + 1])
        _render_chunk(out[first:last], image[sl] - first, position[sl], value[sl], length[first:last],
                      angle[first:last], width[first:last])
    return out


def _render_chunk(out: Tensor, image: Tensor, position: Tensor, value: Tensor, length: Tensor, angle: Tensor,
                  width: Tensor) -> None:
    n, _, h, w = out.shape
    device, dtype = out.device, out.dtype
    width = width.long()
    # images sorted by width: each width group is a contiguous slice of the canvas (no gathers)
    order = torch.sort(width, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    dy, dx, weight = line_taps(length, angle)
    wmax = int(width.max())
    blur_margin = wmax // 2 + 1
    margin = max(int(max(dy.abs().max(), dx.abs().max())) + 1, blur_margin)
    hp, wp = h + 2 * margin, w + 2 * margin
    # one scatter-add of every (seed, line sample) pair into a padded canvas
    offset = (dy * wp + dx).to(device)
    base = rank[image] * (hp * wp) + (position // w + margin) * wp + (position % w + margin)
    image_d = image.to(device)
    index = base.to(device).view(-1, 1) + offset[image_d]
    contrib = value.to(device=device, dtype=dtype).view(-1, 1) * weight.to(device=device, dtype=dtype)[image_d]
    canvas = torch.zeros(n * hp * wp, device=device, dtype=dtype)
    canvas.index_add_(0, index.view(-1), contrib.view(-1))
    x = canvas.view(n, 1, hp, wp)[:, :, margin - blur_margin:margin + h + blur_margin,
                                  margin - blur_margin:margin + w + blur_margin]
    # 3 x 3 seed spread (5 taps)
    ys, xs = x.shape[-2], x.shape[-1]
    y = x[..., 1:ys - 1, 1:xs - 1] * SPREAD_CENTRE
    y.add_(x[..., 0:ys - 2, 1:xs - 1], alpha=SPREAD_SIDE).add_(x[..., 2:ys, 1:xs - 1], alpha=SPREAD_SIDE)
    y.add_(x[..., 1:ys - 1, 0:xs - 2], alpha=SPREAD_SIDE).add_(x[..., 1:ys - 1, 2:xs], alpha=SPREAD_SIDE)
    # per-width-group separable width x width Gaussian (scalar taps) into one buffer (sorted order),
    # then min-max normalisation of the whole chunk and back to the input order
    blurred = torch.empty(n, 1, h, w, device=device, dtype=dtype)
    values, counts = torch.unique_consecutive(width[order], return_counts=True)
    start = 0
    for wk, count in zip(values.tolist(), counts.tolist()):
        crop = (wmax - wk) // 2
        block = y[start:start + count, :, crop:crop + h + wk - 1, crop:crop + w + wk - 1]
        _blur_scalar(block, _opencv_taps(wk), out=blurred[start:start + count])
        start += count
    blurred = normalise01(blurred)
    torch.index_select(blurred, 0, rank.to(device), out=out)


@functools.lru_cache(maxsize=64)
def _opencv_taps(width: int) -> tuple[float, ...]:
    """Normalised 1-D taps of OpenCV's width × width Gaussian (sigma from the width)."""
    sigma = opencv_sigma(torch.tensor([width], dtype=torch.float64))
    return tuple(gaussian_taps(sigma, width)[0].tolist())


def _blur_scalar(x: Tensor, taps: tuple[float, ...], out: Tensor) -> Tensor:
    """Valid separable filtering of (N, C, H, W) with the same 1-D ``taps`` for every image (rows, then
    columns) into ``out``: a multiply-add per tap on whole planes (a single tap 1.0 copies)."""
    k = len(taps)
    if k == 1:
        return out.copy_(x).mul_(taps[0]) if taps[0] != 1.0 else out.copy_(x)
    wo, ho = x.shape[-1] - k + 1, x.shape[-2] - k + 1
    y = x[..., 0:wo] * taps[0]
    for i in range(1, k):
        y.add_(x[..., i:i + wo], alpha=taps[i])
    torch.mul(y[..., 0:ho, :], taps[0], out=out)
    for i in range(1, k):
        out.add_(y[..., i:i + ho, :], alpha=taps[i])
    return out


class Rain(Degradation):
    """Rain streaks (SCIENCE.md streak model; see the module docstring).

    Spec keys: ``preset`` (small | medium | large | random; default small) and overrides ``amount = [lo, hi]``
    (fraction of pixels starting a streak, in [0, 1]), ``width = [..]`` or ``{values = [..], probs = [..]}``
    (odd kernel sizes 1..31), ``length = [lo, hi]`` (pixels at 128 px, >= 1), ``angle = [lo, hi]`` or
    ``[[lo, hi], [lo, hi], ...]`` (degrees from vertical in [-90, 90], disjoint), ``beta = [lo, hi]`` (in
    [0, 1], default [0.6, 1.0]), ``length_scale`` (default true: lengths × H/128).

    >>> rain = Rain(preset="small", amount=[0.01, 0.02])
    >>> rain.describe()["amount"], rain.describe()["width"]
    ([0.01, 0.02], {'values': [1, 3], 'probs': [0.5, 0.5]})
    """

    name: ClassVar[str] = "rain"
    keys: ClassVar[tuple[str, ...]] = ("amount", "width", "length", "angle", "beta", "length_scale")
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
        self.length_scale = parse_bool(owner, "length_scale", r.get("length_scale", True))

    def length_factor(self, height: int) -> float:
        """Pixels per specified length unit for images of ``height`` rows (``height / 128`` or 1)."""
        return height / REFERENCE_PATCH if self.length_scale else 1.0

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {
            "amount": self.amount.sample(n, generator),
            "width": self.width.sample(n, generator),
            "length": self.length.sample(n, generator),
            "angle": self.angle.sample(n, generator),
            "beta": self.beta.sample(n, generator),
        }

    def rain_layer(self, shape: tuple[int, int, int], params: dict[str, Tensor], generator: torch.Generator,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """R (N, 1, H, W) in [0, 1] for ``shape`` = (N, H, W) and per-image ``params`` (draws the seeds)."""
        n, h, w = shape
        image, position, value = sample_seeds(params["amount"], h * w, generator)
        length_px = params["length"].to(torch.float64) * self.length_factor(h)
        return render_rain(shape, image, position, value, length_px, params["angle"], params["width"],
                           device=device, dtype=dtype)

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        n, _, h, w = clean.shape
        r = self.rain_layer((n, h, w), params, generator, device=clean.device, dtype=clean.dtype)
        beta = params["beta"].to(device=clean.device, dtype=clean.dtype).view(-1, 1, 1, 1)
        layer = (beta * r).expand(-1, 3, -1, -1)  # grey rain: a broadcast view (clone() before writing to it)
        out = dict(params)
        out["length_px"] = params["length"].to(torch.float64) * self.length_factor(h)
        mask = torch.gt(r, MASK_THRESHOLD, out=torch.empty_like(r))
        return finish(clean, layer, mask, r, out)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name, "preset": self.preset, "amount": self.amount.describe(),
            "width": self.width.describe(), "length": self.length.describe(), "angle": self.angle.describe(),
            "beta": self.beta.describe(), "length_scale": self.length_scale,
            "length_reference_patch": REFERENCE_PATCH, "mask_threshold": MASK_THRESHOLD,
        }
