"""Image complexity measures (higher = more complex for every measure) and set summaries.

Each measure scores ONE image, given as an (H, W, 3) numpy array, a (3, H, W) torch tensor (or a grey
(H, W) array), float in [0, 1] (uint8 arrays are accepted and divided by 255)::

    >>> import numpy as np
    >>> from probe.data import complexity
    >>> flat = np.full((64, 64, 3), 0.5, dtype=np.float32)
    >>> noise = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    >>> complexity.png_bpp(flat) < complexity.png_bpp(noise)
    True
    >>> complexity.entropy(flat)
    0.0

Luminance is ITU-R BT.601 (0.299 R + 0.587 G + 0.114 B); the 8-bit forms round ``x * 255``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from probe.errors import DataError

JPEG_QUALITY = 75
PNG_COMPRESS_LEVEL = 6
_LUMA = np.array([0.299, 0.587, 0.114])


def as_rgb(image: Any) -> np.ndarray:
    """One image as an (H, W, 3) float64 numpy array in [0, 1] (see the module docstring for inputs)."""
    is_tensor = type(image).__module__.startswith("torch")
    if is_tensor:
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr / 255.0
    elif arr.dtype == np.uint16:
        arr = arr / 65535.0
    elif arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"complexity: image must be a float array in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 3 and is_tensor and arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    elif arr.ndim == 3 and arr.shape[-1] not in (1, 3) and arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3) or min(arr.shape[:2]) < 3:
        raise DataError(f"complexity: expected one (H, W, 3) or (3, H, W) image of side >= 3, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("complexity: image contains NaN or inf")
    if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise DataError(f"complexity: image values must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]")
    arr = np.clip(arr, 0.0, 1.0)
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def luminance(image: Any) -> np.ndarray:
    """(H, W) float64 BT.601 luminance in [0, 1]."""
    return as_rgb(image) @ _LUMA


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(x * 255.0).astype(np.uint8)


def _encoded_bpp(image: Any, fmt: str, **save: Any) -> float:
    from PIL import Image

    rgb = _to_uint8(as_rgb(image))
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format=fmt, **save)
    return 8.0 * buf.tell() / (rgb.shape[0] * rgb.shape[1])


def png_bpp(image: Any) -> float:
    """Bits per pixel of the 8-bit RGB image as PNG (Pillow, zlib compress_level 6, no optimize).

    >>> png_bpp(np.zeros((32, 32, 3))) < 1.0
    True
    """
    return _encoded_bpp(image, "PNG", compress_level=PNG_COMPRESS_LEVEL)


def jpeg_bpp(image: Any) -> float:
    """Bits per pixel of the 8-bit RGB image as baseline JPEG at quality 75 (Pillow, 4:2:0). Sizes
    include the file headers (~600 bytes of tables), so compare images of the same size.

    >>> jpeg_bpp(np.zeros((32, 32, 3))) < jpeg_bpp(np.random.default_rng(0).random((32, 32, 3)))
    True
    """
    return _encoded_bpp(image, "JPEG", quality=JPEG_QUALITY)


def gradient_magnitude(image: Any) -> float:
    """Mean luminance gradient magnitude sqrt(gx² + gy²) (central differences, luminance in [0, 1]).

    >>> gradient_magnitude(np.zeros((16, 16, 3)))
    0.0
    """
    y = luminance(image)
    gy, gx = np.gradient(y)
    return float(np.hypot(gx, gy).mean())


def spatial_information(image: Any) -> float:
    """ITU-T P.910 spatial information: std over the image interior of the Sobel magnitude of the 8-bit
    luminance (0–255 scale; the one-pixel border, where Sobel is undefined, is excluded).

    >>> spatial_information(np.zeros((16, 16, 3)))
    0.0
    """
    y = luminance(image) * 255.0
    gx = (y[:-2, 2:] + 2 * y[1:-1, 2:] + y[2:, 2:]) - (y[:-2, :-2] + 2 * y[1:-1, :-2] + y[2:, :-2])
    gy = (y[2:, :-2] + 2 * y[2:, 1:-1] + y[2:, 2:]) - (y[:-2, :-2] + 2 * y[:-2, 1:-1] + y[:-2, 2:])
    return float(np.hypot(gx, gy).std())


def spectral_slope(image: Any) -> float:
    """Slope of log radially-averaged power spectrum vs log spatial frequency of the (Hann-windowed,
    mean-removed) luminance. Natural photos ≈ -2; more negative = smoother; white noise ≈ 0.
    ``nan`` for a constant image (no spectrum to fit).

    >>> bool(spectral_slope(np.random.default_rng(0).random((64, 64, 3))) > -0.5)
    True
    """
    y = luminance(image)
    h, w = y.shape
    y = y - y.mean()
    y = y * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(y))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.hypot(fy, fx) * min(h, w)  # in cycles per image (of the shorter side)
    ring = np.round(radius).astype(np.int64).ravel()
    n_rings = min(h, w) // 2
    counts = np.bincount(ring, minlength=n_rings + 1)[1:n_rings + 1]
    sums = np.bincount(ring, weights=power.ravel(), minlength=n_rings + 1)[1:n_rings + 1]
    mean_power = sums / np.maximum(counts, 1)
    freqs = np.arange(1, n_rings + 1, dtype=np.float64)
    keep = (counts > 0) & (mean_power > 0)
    # below ~1e-20 of the peak the "power" is float round-off, not signal
    if keep.sum() < 2 or mean_power.max() <= 1e-20:
        return float("nan")
    keep &= mean_power > mean_power.max() * 1e-20
    slope = np.polyfit(np.log(freqs[keep]), np.log(mean_power[keep]), 1)[0]
    return float(slope)


def entropy(image: Any) -> float:
    """Shannon entropy (bits) of the 256-bin histogram of the 8-bit luminance (0 … 8).

    >>> round(entropy(np.linspace(0, 1, 256).reshape(16, 16)), 3)
    8.0
    """
    y = _to_uint8(luminance(image))
    p = np.bincount(y.ravel(), minlength=256).astype(np.float64)
    p = p[p > 0] / y.size
    return float(-(p * np.log2(p)).sum() + 0.0)


MEASURES: dict[str, Callable[[Any], float]] = {
    "png_bpp": png_bpp,
    "jpeg_bpp": jpeg_bpp,
    "gradient_magnitude": gradient_magnitude,
    "spatial_information": spatial_information,
    "spectral_slope": spectral_slope,
    "entropy": entropy,
}


def _iter_images(images: Any) -> Iterable[Any]:
    is_tensor = type(images).__module__.startswith("torch")
    if is_tensor or isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise DataError(f"complexity: expected a batch (N, 3, H, W) tensor or (N, H, W, 3) array, "
                            f"got shape {tuple(images.shape)}")
        if is_tensor:
            images = images.detach().cpu()
        return list(images)
    return list(images)


def score_images(images: Any, measures: Iterable[str] | None = None):
    """One row per image, one column per measure (all of :data:`MEASURES` by default).

    ``images``: an (N, 3, H, W) tensor, an (N, H, W, 3) array or a list of single images.

    >>> import torch
    >>> score_images(torch.rand(2, 3, 32, 32)).shape
    (2, 6)
    """
    import pandas as pd

    names = list(MEASURES) if measures is None else list(measures)
    unknown = [m for m in names if m not in MEASURES]
    if unknown:
        raise DataError(f"complexity: unknown measure {unknown[0]!r}; available: {', '.join(MEASURES)}")
    rows = [{m: MEASURES[m](img) for m in names} for img in _iter_images(images)]
    frame = pd.DataFrame(rows, columns=names, dtype=float)
    frame.index.name = "image"
    return frame


def score_set(images: Any, measures: Iterable[str] | None = None) -> dict[str, float]:
    """Mean of every measure over a set of images (NaNs, e.g. spectral slope of flat images, ignored).

    >>> import torch
    >>> sorted(score_set(torch.rand(2, 3, 32, 32)))[:2]
    ['entropy', 'gradient_magnitude']
    """
    frame = score_images(images, measures)
    if len(frame) == 0:
        raise DataError("complexity: no images to score")
    return {m: float(frame[m].mean(skipna=True)) for m in frame.columns}
