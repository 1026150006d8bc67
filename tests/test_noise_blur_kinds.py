"""The unseen-kind degradations of the denoise / deblur studies: spatially correlated noise and defocus blur.
Ground-truth layers (O = clamp(B + D)), seeding, validation, and agreement with independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from probe.data.degradations import make_degradation
from probe.errors import ConfigError


def _apply(spec, images, seed=0):
    return make_degradation(spec).apply(images, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spec", [{"type": "noise_correlated", "sigma": [10, 30], "corr": [1, 2]},
                                  {"type": "defocus", "radius": [1.5, 3.0]}])
def test_layers_seeding_and_masks(spec):
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    a, b, c = _apply(spec, images), _apply(spec, images), _apply(spec, images, seed=1)
    assert torch.equal(a.degraded, b.degraded) and not torch.equal(a.degraded, c.degraded)
    assert torch.equal(a.degraded, (a.clean + a.layer).clamp(0, 1)) and torch.equal(a.clean, images)
    assert a.mask.shape == (3, 1, 40, 40) and float(a.soft_mask.max()) == pytest.approx(1.0)
    assert set(a.params) == ({"sigma", "corr"} if spec["type"] == "noise_correlated" else {"radius"})


def test_correlated_noise_has_its_level_and_the_autocorrelation_of_its_filter():
    deg = make_degradation({"type": "noise_correlated", "sigma": 20, "corr": 1.5})
    out = deg.apply(torch.full((8, 3, 64, 64), 0.5), torch.Generator().manual_seed(0))
    n = (out.layer * 255 / 20).double()
    assert float(n.std()) == pytest.approx(1.0, abs=0.05)
    assert bool((out.mask == 1).all())
    # a Gaussian filter of std s has a Gaussian autocorrelation of std s*sqrt(2): rho(1 px) = exp(-1/(4 s^2))
    lag1 = float((n[..., :, 1:] * n[..., :, :-1]).mean() / (n**2).mean())
    assert lag1 == pytest.approx(math.exp(-1 / (4 * 1.5**2)), abs=0.03)
    white = make_degradation({"type": "noise", "sigma": 20}).apply(torch.full((8, 3, 64, 64), 0.5),
                                                                  torch.Generator().manual_seed(0))
    w = white.layer.double()
    assert abs(float((w[..., :, 1:] * w[..., :, :-1]).mean() / (w**2).mean())) < 0.03  # the training noise: white


def _reference_disk(r: float, fine: int = 64) -> np.ndarray:
    """Independent pillbox: covered area per pixel by 64 x 64 supersampling in numpy, normalised."""
    k = int(math.ceil(r))
    s = (np.arange(fine) + 0.5) / fine - 0.5
    offs = np.arange(-k, k + 1)
    yy = (offs[:, None] + s[None, :]).reshape(-1)
    inside = (yy[:, None] ** 2 + yy[None, :] ** 2) <= r * r
    area = inside.reshape(2 * k + 1, fine, 2 * k + 1, fine).mean((1, 3))
    return area / area.sum()


def test_defocus_matches_scipy_convolution_with_an_independent_disk():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for r in (1.5, 2.7):
        out = _apply({"type": "defocus", "radius": r}, images)
        kernel = _reference_disk(r)
        ref = np.stack([[ndi.convolve(images[i, c].numpy(), kernel, mode="mirror") for c in range(3)]
                        for i in range(2)])
        assert np.abs(out.degraded.numpy() - ref).max() < 5e-3
        assert float(out.mask.mean()) > 0.2  # random texture: a disk of 1.5 px changes most pixels visibly


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="corr"):
        make_degradation({"type": "noise_correlated", "corr": 0})
    with pytest.raises(ConfigError, match="radius"):
        make_degradation({"type": "defocus", "radius": [3, 1]})
    with pytest.raises(ConfigError, match="unknown key 'size'"):
        make_degradation({"type": "defocus", "size": 3})
