"""Attribution maps and what is read from them: the Diffusion Index, region and component shares.

Diffusion Index (:func:`diffusion_index`): DI = (1 − G) × 100 with the exact Gini of Gu & Dong's LAM code on
the map |Σ_c A| / max; returned with the map size because DI depends on it. Size-aware companions:
:func:`diffusion_index_corrected` (finite-n correction, G·n/(n−1): a delta map gives exactly ≈ 0 at any n)
and :func:`effective_pixels` ((Σa)²/Σa², the participation ratio — unchanged by padding a map with zeros, so
comparable across map sizes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from torch import Tensor

from probe.errors import DataError

__all__ = ["DiffusionIndex", "attribution_map", "component_shares", "diffusion_index", "diffusion_index_corrected",
           "effective_pixels", "gini", "region_shares"]

def attribution_map(attr: Tensor | np.ndarray) -> np.ndarray:
    """LAM's map: |Σ_c A| (``grad_abs_norm`` before normalisation); ``(C,H,W)`` → ``(H,W)``,
    ``(N,C,H,W)`` → ``(N,H,W)``, float64 numpy."""
    a = attr.detach().cpu().double().numpy() if isinstance(attr, Tensor) else np.asarray(attr, np.float64)
    if a.ndim not in (3, 4):
        raise DataError(f"attribution_map expects (C,H,W) or (N,C,H,W), got shape {a.shape}")
    return np.abs(a.sum(axis=-3))


def gini(values: np.ndarray | Tensor, epsilon: float = 1e-7) -> float:
    """The exact Gini coefficient of LAM's code: flatten, shift negatives to 0, add ``epsilon``, sort,
    G = Σᵢ (2i − n − 1) x₍ᵢ₎ / (n Σ x) (i = 1..n), in float64.

    >>> round(gini(np.ones(100)), 6), round(gini(np.eye(10)[0]), 3)
    (0.0, 0.9)
    """
    x = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values)
    x = np.array(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise DataError("gini of an empty array")
    if x.min() < 0:
        x -= x.min()
    x += epsilon
    x = np.sort(x)
    n = x.size
    index = np.arange(1, n + 1)
    return float(np.sum((2 * index - n - 1) * x) / (n * np.sum(x)))


class DiffusionIndex(NamedTuple):
    """DI = (1 − Gini) × 100 of a map, with the number of pixels it was computed on."""

    value: float
    map_size: int


def _normalised(amap: np.ndarray | Tensor) -> np.ndarray | None:
    a = amap.detach().cpu().double().numpy() if isinstance(amap, Tensor) else np.asarray(amap, np.float64)
    a = np.abs(a)
    peak = a.max() if a.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return None
    return a / peak


def diffusion_index(amap: np.ndarray | Tensor) -> DiffusionIndex:
    """LAM's Diffusion Index of a 2-D map (abs, normalised by its max, exact :func:`gini`).

    An all-zero map has no attribution at all and gives NaN (LAM's code would report 100).

    >>> diffusion_index(np.ones((8, 8)))
    DiffusionIndex(value=100.0, map_size=64)
    """
    a = _normalised(amap)
    size = int(np.asarray(amap.shape).prod())
    if a is None:
        return DiffusionIndex(float("nan"), size)
    return DiffusionIndex((1.0 - gini(a)) * 100.0, size)


def diffusion_index_corrected(amap: np.ndarray | Tensor) -> float:
    """Finite-size corrected DI: (1 − G · n/(n−1)) × 100, so a one-pixel map gives ≈ 0 at any map size
    (plain DI gives 100/n). Uniform maps stay at 100. NaN for an all-zero map or n < 2."""
    a = _normalised(amap)
    if a is None or a.size < 2:
        return float("nan")
    n = a.size
    return (1.0 - gini(a) * n / (n - 1)) * 100.0


def effective_pixels(amap: np.ndarray | Tensor) -> float:
    """Participation ratio (Σa)² / Σa² of |map|: the number of pixels the attribution is spread over —
    1 for a delta, n for a uniform map, and unchanged when the map is padded with zeros (size-invariant)."""
    a = _normalised(amap)
    if a is None:
        return float("nan")
    return float(a.sum() ** 2 / np.sum(a * a))


def region_shares(amap: np.ndarray, mask: np.ndarray | Tensor) -> dict[str, np.ndarray]:
    """Share of map mass inside a binary mask, per image: ``share_in_mask``, ``mask_fraction`` and
    ``mask_enrichment`` = share / fraction (1 = no preference for rain pixels). ``amap`` (N,H,W), ``mask``
    (N,1,H,W) or (N,H,W)."""
    m = mask.detach().cpu().double().numpy() if isinstance(mask, Tensor) else np.asarray(mask, np.float64)
    if m.ndim == 4:
        m = m[:, 0]
    if m.shape != amap.shape:
        raise DataError(f"mask shape {m.shape} does not match the attribution map {amap.shape}")
    m = (m > 0.5).astype(np.float64)
    total = amap.reshape(len(amap), -1).sum(1)
    inside = (amap * m).reshape(len(amap), -1).sum(1)
    fraction = m.reshape(len(m), -1).mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
        enrichment = np.where(fraction > 0, share / np.where(fraction > 0, fraction, 1.0), np.nan)
    return {"share_in_mask": share, "mask_fraction": fraction, "mask_enrichment": enrichment}


def component_shares(attr_background: Tensor, attr_rain: Tensor) -> dict[str, np.ndarray]:
    """Per image: ``share_on_rain`` = Σ|Σ_c A_R| / (Σ|Σ_c A_B| + Σ|Σ_c A_R|) (attribution mass on the rain
    input), and the signed contributions ``rain_contribution`` = Σ A_R, ``background_contribution`` = Σ A_B
    (in objective units; they add up to f(x) − f(baseline) for complete methods)."""
    mb = attribution_map(attr_background).reshape(attr_background.shape[0], -1).sum(1)
    mr = attribution_map(attr_rain).reshape(attr_rain.shape[0], -1).sum(1)
    total = mb + mr
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mr / np.where(total > 0, total, 1.0), np.nan)
    return {"share_on_rain": share,
            "rain_contribution": attr_rain.detach().cpu().double().flatten(1).sum(1).numpy(),
            "background_contribution": attr_background.detach().cpu().double().flatten(1).sum(1).numpy()}

