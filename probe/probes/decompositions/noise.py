"""The ``noise`` decomposition: how much noise is removed in flat regions vs how much detail survives in
textured ones, and which frequency bands the error is in.

Regions of the clean image B (its luma Y): textured T = ``local_std(Y, 5) > TEXTURE_THRESHOLD`` (0.02 of
the intensity range, ≈ 5 levels of 255), flat F = the rest. With E = Ŷ − B (error), D = O − B (noise) and
the high-pass H(x) = x − G₁(x) (Gaussian of σ = 1 px):

* ``noise_removed_flat`` / ``noise_removed_textured`` = 1 − ‖E·F‖/‖D·F‖ (resp. T): noise removed there;
* ``detail_kept_textured`` = Σ_T H(Ŷ)·H(B) / Σ_T H(B)²: the gain of the output's fine detail along B's in
  textured regions (1 = every detail kept — identity and oracle alike, as the noise is independent of B;
  < 1 = detail smoothed away; 0 = none left);
* ``psnr_flat``, ``psnr_textured``, ``psnr_image`` (10 log10 1/MSE in the region / the whole image);
* ``err_low|mid|high`` and ``removed_low|mid|high``: :func:`~probe.probes.decompositions.common.band_quantities`;
* ``flat_fraction``: share of flat pixels (a smooth source is almost all flat: its textured values are NaN).
"""

from __future__ import annotations

from torch import Tensor

from probe.probes.decompositions.common import (
    band_quantities,
    gaussian_lowpass,
    local_std,
    luminance,
    psnr_of,
    region_mse,
    region_removal,
)

TEXTURE_WINDOW = 5
TEXTURE_THRESHOLD = 0.02
DETAIL_SIGMA = 1.0
QUANTITIES = ["noise_removed_flat", "noise_removed_textured", "detail_kept_textured", "psnr_flat",
              "psnr_textured", "psnr_image", "err_low", "err_mid", "err_high", "removed_low", "removed_mid",
              "removed_high", "flat_fraction"]


def texture_mask(clean: Tensor) -> Tensor:
    """(N, 1, H, W) bool: textured pixels of B (local std of its luma over 5 × 5 above 0.02)."""
    return local_std(luminance(clean), TEXTURE_WINDOW) > TEXTURE_THRESHOLD


def noise_quantities(output: Tensor, degraded: Tensor, clean: Tensor) -> dict[str, Tensor]:
    """Every quantity of :data:`QUANTITIES`, (N,) float64 each. Inputs (N, 3, H, W) in [0, 1]."""
    out, clean = output.double(), clean.double()
    e, d = out - clean, degraded.double() - clean
    textured = texture_mask(clean)
    flat = ~textured
    q = {"noise_removed_flat": region_removal(e, d, flat), "noise_removed_textured": region_removal(e, d, textured)}
    hb = clean - gaussian_lowpass(clean, DETAIL_SIGMA)
    ho = out - gaussian_lowpass(out, DETAIL_SIGMA)
    t = textured.double()
    den = (hb**2 * t).sum((1, 2, 3))
    q["detail_kept_textured"] = (ho * hb * t).sum((1, 2, 3)) / den.where(den > 1e-12, den.new_tensor(float("nan")))
    q["psnr_flat"] = psnr_of(region_mse(e, flat))
    q["psnr_textured"] = psnr_of(region_mse(e, textured))
    q["psnr_image"] = psnr_of((e**2).mean((1, 2, 3)))
    q.update(band_quantities(e, d))
    q["flat_fraction"] = flat.double().mean((1, 2, 3))
    return q


noise_quantities.quantities = QUANTITIES  # type: ignore[attr-defined]
