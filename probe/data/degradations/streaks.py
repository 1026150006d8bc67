"""Rain-streak rendering primitives: seeds, the co-authors' streak kernel and the batched renderer.

Used by :mod:`probe.data.degradations.rain` (the co-authors' model), :mod:`.rain_particles` and
:mod:`.blur` (motion-blur lines). See :mod:`.rain` for the model and SCIENCE.md for the reference facts.

Rendering is one scatter-add of every streak sample of the batch into a padded canvas, one 5-tap spread and
a separable Gaussian per width group (images sorted by width; a loop over the few distinct widths and their
taps, never over images, streaks or pixels); it runs on the device of the images (CPU or CUDA) and equals
the FFT convolution of the seed map with the dense kernel of :func:`streak_kernel` (tested). On the CPU the
batch is rendered in chunks of :data:`CPU_CHUNK` images to keep temporaries small.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from probe.data.degradations.base import gaussian_taps, normalise01, separable_filter

REFERENCE_PATCH = 128  # lengths of the presets are given at this patch size
MASK_THRESHOLD = 50 / 255  # binary rain mask: R > 50/255 (SCIENCE.md)
SPREAD_CENTRE, SPREAD_SIDE = 8.0, 0.1  # the 3 x 3 seed spread [[0, .1, 0], [.1, 8, .1], [0, .1, 0]]
SEED_SPREAD = ((0.0, SPREAD_SIDE, 0.0), (SPREAD_SIDE, SPREAD_CENTRE, SPREAD_SIDE), (0.0, SPREAD_SIDE, 0.0))
MAX_WIDTH = 31
CPU_CHUNK = 32  # images rendered together on the CPU (bounded, cache-friendly temporaries)
LENGTH_RULES = ("window", "exact")  # window: the co-authors' rotated diagonal (L / max(|cos|, |sin|) drawn)
SCALE_RULES = ("length", "none", "zoom")  # how a preset given at 128 px is applied to an H-row patch
BORDERS = ("zero", "reflect")  # seed map outside the image: zero (streaks leave the frame) or reflect-101
# OpenCV's getGaussianKernel for sigma <= 0 and an odd size <= 7 uses this fixed (binomial-like) table
OPENCV_SMALL_GAUSSIAN = {1: (1.0,), 3: (0.25, 0.5, 0.25), 5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
                         7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)}



def opencv_sigma(width: Tensor) -> Tensor:
    """Sigma OpenCV's ``GaussianBlur`` uses for an odd ``width`` × ``width`` kernel with sigma = 0."""
    return 0.3 * ((width.to(torch.float64) - 1) * 0.5 - 1) + 0.8


def drawn_length(length: Tensor, angle: Tensor, rule: str = "window") -> Tensor:
    """Pixels actually drawn for a streak of nominal ``length`` at ``angle`` degrees (float64, per image).

    ``rule = "window"`` (the co-authors' generator, SCIENCE.md): the L-pixel diagonal of an L × L matrix is
    rotated inside that same window, so the window clips it at ``L / max(|cos t|, |sin t|)`` — L at 0° and
    90°, 1.155 L at ±30°/±60°, √2 L at ±45°. ``rule = "exact"``: L pixels at every angle.

    >>> drawn_length(torch.tensor([31.0, 31.0]), torch.tensor([0.0, 45.0])).round(decimals=2).tolist()
    [31.0, 43.84]
    """
    length = length.detach().cpu().to(torch.float64)
    if rule == "exact":
        return length
    if rule != "window":
        raise ValueError(f"length rule must be one of {LENGTH_RULES}, got {rule!r}")
    t = torch.deg2rad(angle.detach().cpu().to(torch.float64))
    return length / torch.maximum(torch.cos(t).abs(), torch.sin(t).abs())


def opencv_gaussian_taps(width: int) -> tuple[float, ...]:
    """Normalised 1-D taps of ``cv2.GaussianBlur(x, (width, width), 0)``: OpenCV's fixed table for odd
    widths <= 7, else the Gaussian of :func:`opencv_sigma`.

    >>> opencv_gaussian_taps(3)
    (0.25, 0.5, 0.25)
    """
    if width in OPENCV_SMALL_GAUSSIAN:
        return OPENCV_SMALL_GAUSSIAN[width]
    sigma = opencv_sigma(torch.tensor([width], dtype=torch.float64))
    return tuple(gaussian_taps(sigma, width)[0].tolist())


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


def streak_kernel(length: Tensor, angle: Tensor, width: Tensor | None = None, spread: bool = False,
                  length_rule: str = "window") -> Tensor:
    """Dense per-image streak kernels (N, 1, K, K), K odd, centred: the line of :func:`line_taps` of
    :func:`drawn_length` pixels (``length_rule``), blurred by OpenCV's ``width`` × ``width`` Gaussian
    (:func:`opencv_gaussian_taps`) and, with ``spread``, the 3 × 3 seed spread — the kernel R = seeds ⊛ kernel
    uses. Built as a batch with coordinate math (used by tests and figures).

    >>> streak_kernel(torch.tensor([9.0, 20.0]), torch.tensor([0.0, 45.0]), torch.tensor([3, 1])).shape
    torch.Size([2, 1, 23, 23])
    """
    n = int(length.shape[0])
    dy, dx, weight = line_taps(drawn_length(length, angle, length_rule), angle)
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
        taps = torch.zeros(n, wmax, dtype=torch.float64)
        for i, wk in enumerate(width.long().tolist()):
            taps[i, (wmax - wk) // 2:(wmax - wk) // 2 + wk] = torch.tensor(opencv_gaussian_taps(wk))
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
                dtype: torch.dtype = torch.float32, chunk: int | None = None, length_rule: str = "window",
                border: str = "zero") -> Tensor:
    """The normalised rain layer R (N, 1, H, W) in [0, 1] from seeds and per-image streak parameters.

    ``shape`` = (N, H, W); seeds as returned by :func:`sample_seeds` (any order); ``length`` in pixels (the
    nominal L; the pixels drawn follow ``length_rule``, see :func:`drawn_length`), ``angle`` in degrees,
    ``width`` odd ints (N,). Equals ``normalise(seedmap ⊛ streak_kernel(length, angle, width, spread=True,
    length_rule=length_rule))`` ('same' size) with zero padding, or with ``border = "reflect"`` on the seed map
    reflected at the image border (OpenCV's default BORDER_REFLECT_101, as the co-authors' ``filter2D``; one
    reflection, so streaks longer than the image are cut). On the CPU the batch is rendered in chunks of
    ``chunk`` images (default :data:`CPU_CHUNK`) so the temporaries stay small and cache-resident; each chunk
    is fully vectorised.
    """
    n, h, w = shape
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    device = torch.device(device)
    length = drawn_length(length, angle, length_rule)
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
                      angle[first:last], width[first:last], border == "reflect")
    return out


def _mirror(coord: Tensor, size: int, reach: int) -> tuple[Tensor, Tensor]:
    """Reflect-101 copies of coordinates (S,) → candidates (S, 3) = (c, −c, 2(size − 1) − c) and a mask of
    those within ``reach`` of the image (the original always kept, duplicates dropped)."""
    cand = torch.stack([coord, -coord, 2 * (size - 1) - coord], 1)
    keep = (cand >= -reach) & (cand <= size - 1 + reach)
    keep[:, 1:] &= cand[:, 1:] != coord.view(-1, 1)
    keep[:, 0] = True
    return cand, keep


def _render_chunk(out: Tensor, image: Tensor, position: Tensor, value: Tensor, length: Tensor, angle: Tensor,
                  width: Tensor, reflect: bool = False) -> None:
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
    extent = int(max(dy.abs().max(), dx.abs().max()))
    margin = max(extent + 1, blur_margin)
    rows, cols = position // w, position % w
    if reflect:  # mirrored copies of the seeds near the border (reflect-101 padding of the seed map)
        reach = extent + blur_margin
        ry, ky = _mirror(rows, h, reach)
        rx, kx = _mirror(cols, w, reach)
        keep = (ky.unsqueeze(2) & kx.unsqueeze(1)).view(-1, 9)
        rows = ry.unsqueeze(2).expand(-1, 3, 3).reshape(-1, 9)[keep]
        cols = rx.unsqueeze(1).expand(-1, 3, 3).reshape(-1, 9)[keep]
        which = torch.nonzero(keep)[:, 0]
        image, value = image[which], value[which]
        margin += reach
    hp, wp = h + 2 * margin, w + 2 * margin
    # one scatter-add of every (seed, line sample) pair into a padded canvas
    offset = (dy * wp + dx).to(device)
    base = rank[image] * (hp * wp) + (rows + margin) * wp + (cols + margin)
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
    return opencv_gaussian_taps(width)


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
