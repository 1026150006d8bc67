"""Shared pieces of the content decompositions: region maps of the clean image B and frequency bands.

* luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) of B;
* ``local_std(Y, w)``: standard deviation over a w × w window, sqrt(box(Y²) − box(Y)²), mirror padding
  (scipy.ndimage ``mode="mirror"``), the texture measure of the noise decomposition;
* ``sobel_magnitude(Y)``: sqrt((Gx² + Gy²) / 2) with Sobel kernels /4, edge-replicated border — the same
  definition as ``skimage.filters.sobel``, the edge measure of the blur decomposition;
* ``band_errors(x)``: the per-pixel energy of x in radial frequency bands (cycles per pixel, |f| =
  sqrt(fy² + fx²)): low [0, 1/8), mid [1/8, 1/4), high [1/4, ∞) of the 2-D DFT; by Parseval the bands sum
  to the mean of x² exactly (circular, no window);
* ``region_removal(e, d, m)`` = 1 − ‖e·m‖ / ‖d·m‖: the papers' removal ratio restricted to the region m
  (e = Ŷ − B, d = O − B; 1 = all removed, 0 = untouched, < 0 = made worse); NaN for an empty region or d = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

BANDS = {"low": (0.0, 0.125), "mid": (0.125, 0.25), "high": (0.25, float("inf"))}
EPS = 1e-12


def luminance(x: Tensor) -> Tensor:
    """(N, 1, H, W) BT.601 luma of (N, 3, H, W) RGB in [0, 1] (float64)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return (x.double() * w).sum(1, keepdim=True)


def local_std(y: Tensor, window: int = 5) -> Tensor:
    """(N, 1, H, W) standard deviation over a ``window`` × ``window`` neighbourhood (odd), mirror padding."""
    r = window // 2
    padded = F.pad(y.double(), (r,) * 4, mode="reflect")
    mean = F.avg_pool2d(padded, window, stride=1)
    mean_sq = F.avg_pool2d(padded**2, window, stride=1)
    return (mean_sq - mean**2).clamp_min(0).sqrt()


def sobel_magnitude(y: Tensor) -> Tensor:
    """(N, 1, H, W) Sobel gradient magnitude sqrt((Gx² + Gy²)/2), kernels [1, 2, 1]ᵀ[1, 0, −1]/4 (as
    ``skimage.filters.sobel``), edge-replicated border."""
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=torch.float64,
                     device=y.device) / 4
    kernels = torch.stack([k, k.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(y.double(), (1, 1, 1, 1), mode="replicate"), kernels)
    return ((g**2).sum(1, keepdim=True) / 2).sqrt()


def gaussian_lowpass(x: Tensor, sigma: float) -> Tensor:
    """Gaussian low-pass of (N, C, H, W), truncated at round(3 sigma) px, mirror padding (float64)."""
    radius = int(3 * sigma + 0.5)
    r = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    out = F.pad(x.double(), (radius,) * 4, mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def band_errors(x: Tensor) -> dict[str, Tensor]:
    """{band: (N,) mean energy of x (N, C, H, W) in that radial frequency band}; Σ bands = mean(x²)."""
    n, c, h, w = x.shape
    power = torch.fft.fft2(x.double()).abs() ** 2 / (h * w)  # Parseval: Σ_f power = Σ_x x²
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=x.device).view(-1, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=x.device).view(1, -1)
    radius = (fy**2 + fx**2).sqrt()
    out = {}
    for name, (lo, hi) in BANDS.items():
        band = ((radius >= lo) & (radius < hi)).to(torch.float64)
        out[name] = (power * band).sum((1, 2, 3)) / (c * h * w)
    return out


def region_mse(e: Tensor, m: Tensor) -> Tensor:
    """(N,) mean of e² over the region m (N, 1, H, W) and the channels; NaN for an empty region."""
    m = m.double()
    total = ((e.double() ** 2) * m).sum((1, 2, 3))
    count = m.sum((1, 2, 3)) * e.shape[1]
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def region_removal(e: Tensor, d: Tensor, m: Tensor) -> Tensor:
    """(N,) 1 − ‖e·m‖ / ‖d·m‖; NaN where the region is empty or d vanishes on it."""
    m = m.double()
    num = ((e.double() * m) ** 2).sum((1, 2, 3)).sqrt()
    den = ((d.double() * m) ** 2).sum((1, 2, 3)).sqrt()
    return torch.where(den > EPS, 1 - num / den.clamp_min(EPS), torch.full_like(num, float("nan")))


def psnr_of(mse: Tensor) -> Tensor:
    """(N,) PSNR in dB of a peak-1 signal, 10 log10(1 / mse) with mse floored at 1e-10 (100 dB); NaN stays."""
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def band_quantities(e: Tensor, d: Tensor) -> dict[str, Tensor]:
    """``err_<band>`` (energy of e = Ŷ − B per band) and ``removed_<band>`` = 1 − sqrt(err / energy of
    d = O − B in the band) for every band of :data:`BANDS` (NaN where d has no energy in the band)."""
    err, deg = band_errors(e), band_errors(d)
    out = {}
    for name in BANDS:
        out[f"err_{name}"] = err[name]
        ok = deg[name] > EPS
        out[f"removed_{name}"] = torch.where(ok, 1 - (err[name] / deg[name].clamp_min(EPS)).sqrt(),
                                             torch.full_like(err[name], float("nan")))
    return out
