"""PSNR and SSIM the way a BasicSR-based code base computes them (``val.metrics`` of its option file).

Papers built on BasicSR (Restormer, DRSformer, NAFNet, …) report numbers under the conventions of
``basicsr/metrics/psnr_ssim.py``, which differ from probe's own RGB, float, uncropped metrics
(:mod:`probe.metrics`) by up to several dB. Given one image pair (NCHW tensors in [0, 1]):

1. both images become 8-bit: clamped to [0, 1], × 255, rounded (BasicSR's ``tensor2img``);
2. ``crop_border`` pixels are cut from every edge;
3. with ``test_y_channel`` both become the ITU-R BT.601 luma
   Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1]; Y in [16, 235]);
4. PSNR = 10 log10(255² / MSE) in dB (capped at 100 dB for identical images, as :func:`probe.metrics.psnr`);
   SSIM (Wang et al. 2004, Eq. 13) with an 11 × 11 Gaussian window (σ = 1.5), population covariances,
   C1 = (0.01 · 255)², C2 = (0.03 · 255)², averaged over the valid region (5 px from the edges) and over channels.

Steps 3–4 use scikit-image (``rgb2ycbcr``, ``peak_signal_noise_ratio``, ``structural_similarity``); a test
checks them against a direct transcription of the formulas above.

::

    from probe.codebase_metrics import codebase_scores
    psnr_y, ssim_y = codebase_scores(output, clean, crop_border=0, test_y_channel=True)   # (N,), (N,)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.errors import ConfigError

PSNR_CAP = 100.0


def to_uint8_hwc(images: Tensor) -> np.ndarray:
    """NCHW floats in [0, 1] → NHWC ``uint8`` (clamp, × 255, round half to even as ``np.round``)."""
    arr = images.detach().to("cpu", torch.float64).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return np.round(arr * 255.0).astype(np.uint8)


def _prepare(image: np.ndarray, crop_border: int, test_y_channel: bool) -> np.ndarray:
    """One HWC uint8 image → float64 HWC in [0, 255] after the crop and (optionally) the Y conversion."""
    from skimage.color import rgb2ycbcr

    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel and image.shape[-1] == 3:
        return rgb2ycbcr(image.astype(np.float64) / 255.0)[..., :1]  # Y in [16, 235]
    return image.astype(np.float64)


def check_conventions(crop_border: Any, test_y_channel: Any) -> tuple[int, bool]:
    """``(crop_border, test_y_channel)`` validated: an integer ≥ 0 and a boolean, else :class:`ConfigError`."""
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ConfigError(f"metric conventions: crop_border = {crop_border!r} must be an integer >= 0")
    if not isinstance(test_y_channel, bool):
        raise ConfigError(f"metric conventions: test_y_channel = {test_y_channel!r} must be true or false")
    return crop_border, test_y_channel


def codebase_scores(output: Tensor, target: Tensor, crop_border: int = 0,
                    test_y_channel: bool = False) -> tuple[Tensor, Tensor]:
    """(PSNR in dB, SSIM in [−1, 1]) per image under BasicSR's conventions (module doc), each shape ``(N,)``.

    ``output``, ``target``: NCHW in [0, 1] (values outside are clamped, as BasicSR's ``tensor2img`` does).
    Raises :class:`ConfigError` for a bad convention or when ``crop_border`` leaves fewer than 11 × 11 pixels.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    crop_border, test_y_channel = check_conventions(crop_border, test_y_channel)
    h, w = output.shape[-2:]
    if min(h, w) - 2 * crop_border < 11:
        raise ConfigError(f"metric conventions: crop_border = {crop_border} leaves {h - 2 * crop_border} × "
                          f"{w - 2 * crop_border} px of {h} × {w} images; SSIM needs 11 × 11")
    psnrs, ssims = [], []
    for out, ref in zip(to_uint8_hwc(output), to_uint8_hwc(target)):
        x, y = _prepare(out, crop_border, test_y_channel), _prepare(ref, crop_border, test_y_channel)
        if np.array_equal(x, y):
            psnrs.append(PSNR_CAP)
        else:
            psnrs.append(min(PSNR_CAP, float(peak_signal_noise_ratio(y, x, data_range=255.0))))
        ssims.append(float(structural_similarity(y, x, data_range=255.0, channel_axis=-1, gaussian_weights=True,
                                                 sigma=1.5, use_sample_covariance=False)))
    return torch.tensor(psnrs, dtype=torch.float64), torch.tensor(ssims, dtype=torch.float64)


def metric_conventions(metrics: dict[str, Any]) -> dict[str, tuple[int, bool]]:
    """``{"psnr": (crop_border, test_y_channel), "ssim": (…)}`` from an option file's ``val.metrics``
    (``{name: {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True}}``, as
    :meth:`probe.models.basicsr_options.BasicSROptions.conventions` returns it); metrics other than PSNR and
    SSIM are left out. Raises :class:`ConfigError` for a bad value."""
    out: dict[str, tuple[int, bool]] = {}
    for name, spec in (metrics or {}).items():
        kind = f"{name} {(spec or {}).get('type', '')}".lower()
        for known in ("psnr", "ssim"):
            if known in kind and known not in out:
                out[known] = check_conventions(spec.get("crop_border", 0), spec.get("test_y_channel", False))
    return out
