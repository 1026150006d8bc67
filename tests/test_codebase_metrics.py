"""probe.codebase_metrics against a direct transcription of BasicSR's psnr_ssim formulas and known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from probe.codebase_metrics import codebase_scores, metric_conventions, to_uint8_hwc
from probe.errors import ConfigError


def _reference(out: np.ndarray, ref: np.ndarray, crop: int, y_channel: bool) -> tuple[float, float]:
    """BasicSR's calculate_psnr / calculate_ssim written out (HWC uint8 in, float64 maths, valid filtering)."""
    x, y = out.astype(np.float64), ref.astype(np.float64)
    if crop:
        x, y = x[crop:-crop, crop:-crop], y[crop:-crop, crop:-crop]
    if y_channel:
        weights = np.array([65.481, 128.553, 24.966]) / 255.0
        x, y = (x @ weights + 16.0)[..., None], (y @ weights + 16.0)[..., None]
    mse = np.mean((x - y) ** 2)
    psnr = 20 * np.log10(255.0 / np.sqrt(mse))
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g / g.sum(), g / g.sum())
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch], y[..., ch]
        mu_a, mu_b = convolve2d(a, window, "valid"), convolve2d(b, window, "valid")
        saa = convolve2d(a * a, window, "valid") - mu_a**2
        sbb = convolve2d(b * b, window, "valid") - mu_b**2
        sab = convolve2d(a * b, window, "valid") - mu_a * mu_b
        smap = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
        values.append(smap.mean())
    return psnr, float(np.mean(values))


@pytest.mark.parametrize(("crop", "y_channel"), [(0, False), (0, True), (4, True), (3, False)])
def test_matches_a_direct_transcription_of_basicsr(crop, y_channel):
    gen = torch.Generator().manual_seed(crop + 10 * y_channel)
    clean = torch.rand(3, 3, 40, 36, generator=gen)
    output = (clean + 0.08 * torch.randn(3, 3, 40, 36, generator=gen)).clamp(0, 1)
    psnr, ssim = codebase_scores(output, clean, crop, y_channel)
    for i, (o, r) in enumerate(zip(to_uint8_hwc(output), to_uint8_hwc(clean))):
        ref_psnr, ref_ssim = _reference(o, r, crop, y_channel)
        assert psnr[i].item() == pytest.approx(ref_psnr, abs=1e-6)
        assert ssim[i].item() == pytest.approx(ref_ssim, abs=1e-6)


def test_known_values_and_what_each_convention_changes():
    clean = torch.full((1, 3, 32, 32), 100 / 255)
    shifted = torch.full((1, 3, 32, 32), 110 / 255)  # +10 levels in R, G and B
    psnr_rgb, _ = codebase_scores(shifted, clean)
    assert psnr_rgb.item() == pytest.approx(20 * np.log10(255 / 10), abs=1e-9)
    psnr_y, _ = codebase_scores(shifted, clean, test_y_channel=True)  # luma moves by 10·(65.481+128.553+24.966)/255
    assert psnr_y.item() == pytest.approx(20 * np.log10(255 / (10 * 219.0 / 255)), abs=1e-6)
    border = clean.clone()
    border[..., :4, :] = 0  # an error only in the 4 outer rows: cropping 4 px removes it
    assert codebase_scores(border, clean, crop_border=4)[0].item() == 100.0
    assert codebase_scores(border, clean, crop_border=0)[0].item() < 20
    half = clean + 0.4 / 255  # below half an 8-bit level: rounding makes the images equal
    assert codebase_scores(half, clean)[0].item() == 100.0


def test_bad_conventions_are_one_clear_error():
    x = torch.rand(1, 3, 24, 24)
    with pytest.raises(ConfigError, match="crop_border = -1 must be an integer >= 0"):
        codebase_scores(x, x, crop_border=-1)
    with pytest.raises(ConfigError, match="crop_border = 8 leaves 8 × 8 px of 24 × 24 images"):
        codebase_scores(x, x, crop_border=8)
    with pytest.raises(ConfigError, match="test_y_channel = 'yes' must be true or false"):
        metric_conventions({"psnr": {"type": "calculate_psnr", "test_y_channel": "yes"}})
    assert metric_conventions({"psnr": {"type": "calculate_psnr", "crop_border": 2},
                               "niqe": {"type": "calculate_niqe"}}) == {"psnr": (2, False)}
