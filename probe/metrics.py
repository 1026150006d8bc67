"""Image-quality and decoupled deraining metrics (pure torch, per image, float64 reductions).

All functions take NCHW tensors in [0, 1] and return one value per image (shape ``(N,)``)::

    from probe.metrics import psnr, mse_rain, mse_background
    psnr(output, clean)                       # dB per image
    mse_rain(output, clean, mask)             # what is left of the rain where rain was
    mse_background(output, clean, mask)       # damage to the content elsewhere
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-12


def mse(a: Tensor, b: Tensor) -> Tensor:
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1)


def psnr(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image (capped at 100 dB for identical images)."""
    err = mse(output, target)
    return (10 * torch.log10(data_range**2 / err.clamp_min(1e-10))).clamp(max=100.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5, channels: int = 3) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(output: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity (Wang et al. 2004; 11×11 Gaussian window, σ = 1.5), mean over channels."""
    x, y = output.double(), target.double()
    channels = x.shape[1]
    size = min(11, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # odd window
    window = _gaussian_window(size, 1.5, channels).to(x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1)


def _masked_mse(output: Tensor, clean: Tensor, weight: Tensor) -> Tensor:
    """Σ (Ŷ − B)² · w / Σ w per image (w broadcast over channels); NaN where Σ w = 0."""
    err = ((output.double() - clean.double()) ** 2).mean(1, keepdim=True)
    w = weight.double()
    total = w.flatten(1).sum(1)
    value = (err * w).flatten(1).sum(1) / total.clamp_min(_EPS)
    return torch.where(total > 0, value, torch.full_like(value, float("nan")))


def mse_rain(output: Tensor, clean: Tensor, mask: Tensor) -> Tensor:
    """Rain-removal error: Σ (Ŷ − B)² M / Σ M — what is left of the degradation where it was."""
    return _masked_mse(output, clean, mask)


def mse_background(output: Tensor, clean: Tensor, mask: Tensor) -> Tensor:
    """Background-reconstruction error: Σ (Ŷ − B)² (1 − M) / Σ (1 − M) — damage to the content."""
    return _masked_mse(output, clean, 1 - mask)


def removal_ratio(output: Tensor, degraded: Tensor, clean: Tensor, mask: Tensor) -> Tensor:
    """Fraction of the rain removed: 1 − ‖(Ŷ − B)·M‖ / ‖(O − B)·M‖ (1 = all removed, 0 = untouched)."""
    m = mask.double()
    left = ((output.double() - clean.double()) * m).flatten(1).norm(dim=1)
    there = ((degraded.double() - clean.double()) * m).flatten(1).norm(dim=1)
    value = 1 - left / there.clamp_min(_EPS)
    return torch.where(there > 0, value, torch.full_like(value, float("nan")))


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per image between two same-shaped tensors."""
    x = a.double().flatten(1)
    y = b.double().flatten(1)
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    den = x.norm(dim=1) * y.norm(dim=1)
    value = (x * y).sum(1) / den.clamp_min(_EPS)
    return torch.where(den > 0, value, torch.full_like(value, float("nan")))
