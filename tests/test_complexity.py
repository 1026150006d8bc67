"""Complexity measures: known values on constructed images, input forms, the family order
smooth < faces < natural <= texture, and a monotone dead-leaves complexity knob."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from probe.data import complexity as cx
from probe.data.backgrounds import make_background
from probe.errors import DataError

RNG = np.random.default_rng(0)
NOISE = RNG.random((64, 64, 3))
FLAT = np.full((64, 64, 3), 0.4)


def power_law_image(alpha: float, n: int = 128, seed: int = 0) -> np.ndarray:
    """Random-phase grey image whose power spectrum falls as f^-alpha."""
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    f[0, 0] = 1.0
    phase = np.exp(2j * np.pi * np.random.default_rng(seed).random((n, n)))
    img = np.real(np.fft.ifft2(f ** (-alpha / 2) * phase))
    img = (img - img.min()) / (img.max() - img.min())
    return img


def test_every_measure_ranks_flat_below_noise():
    for name, fn in cx.MEASURES.items():
        flat, noise = fn(FLAT), fn(NOISE)
        assert isinstance(noise, float)
        if name == "spectral_slope":
            assert np.isnan(flat) and noise > -0.5
        else:
            assert flat < noise, name


def test_input_forms_agree():
    hwc = NOISE.astype(np.float32)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    u8 = np.round(hwc * 255).astype(np.uint8)
    for name, fn in cx.MEASURES.items():
        assert fn(hwc) == fn(chw)
        if name in ("png_bpp", "jpeg_bpp"):  # these encode the 8-bit RGB image itself
            assert fn(u8) == fn(hwc)
        else:
            assert fn(u8) == pytest.approx(fn(hwc), rel=1e-2, abs=1e-3)
    grey = NOISE[..., 0]
    assert cx.entropy(grey) == cx.entropy(np.repeat(grey[..., None], 3, axis=-1))
    for bad in (np.full((8, 8, 3), 1.5), np.zeros((2, 8, 8, 3)), np.full((8, 8, 3), np.nan), np.zeros((8, 8, 5))):
        with pytest.raises(DataError, match="complexity"):
            cx.png_bpp(bad)


def test_known_values():
    ramp = np.tile(np.arange(32) / 31.0, (32, 1))
    assert cx.gradient_magnitude(ramp) == pytest.approx(1 / 31.0)
    assert cx.entropy(np.linspace(0, 1, 256).reshape(16, 16)) == pytest.approx(8.0)
    assert cx.entropy(np.tile([0.0, 1.0], (8, 4))) == pytest.approx(1.0)
    # spatial information = std of the Sobel magnitude of the 0-255 luminance inside the border (P.910)
    y = cx.luminance(NOISE) * 255
    ref = np.hypot(ndimage.sobel(y, 0), ndimage.sobel(y, 1))[1:-1, 1:-1].std()
    assert cx.spatial_information(NOISE) == pytest.approx(ref, rel=1e-9)
    # spectral slope recovers the exponent of a synthetic power-law image
    for alpha in (1.0, 2.0, 3.0):
        assert cx.spectral_slope(power_law_image(alpha)) == pytest.approx(-alpha, abs=0.35)
    # compressed sizes: noise is nearly incompressible as PNG, JPEG at quality 75 is far smaller
    assert 20 < cx.png_bpp(NOISE) <= 26 and cx.jpeg_bpp(NOISE) < cx.png_bpp(NOISE)
    # a flat image costs little more than the file headers (JPEG's tables are ~600 bytes)
    assert cx.png_bpp(FLAT) < 0.5 and cx.jpeg_bpp(FLAT) < 1.5 < cx.jpeg_bpp(NOISE) / 4


def test_score_images_and_set():
    imgs = torch.from_numpy(np.stack([NOISE, FLAT * 0 + 0.2, power_law_image(2, n=64)[..., None].repeat(3, -1)]))
    imgs = imgs.permute(0, 3, 1, 2).float()
    frame = cx.score_images(imgs)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(cx.MEASURES)
    assert frame.shape == (3, 6) and frame.index.name == "image"
    assert frame.loc[0, "entropy"] == pytest.approx(cx.entropy(imgs[0]))
    means = cx.score_set(imgs)
    assert set(means) == set(cx.MEASURES)
    assert means["png_bpp"] == pytest.approx(frame["png_bpp"].mean())
    assert means["spectral_slope"] == pytest.approx(frame["spectral_slope"].dropna().mean())  # flat: NaN
    assert cx.score_images(list(imgs[:2]), measures=["entropy"]).shape == (2, 1)
    with pytest.raises(DataError, match="unknown measure 'nope'"):
        cx.score_images(imgs, measures=["nope"])
    with pytest.raises(DataError, match="batch"):
        cx.score_images(imgs[0])


def _ordered(values: list[float], last_loose: bool) -> bool:
    strict = all(a < b for a, b in zip(values[:-2], values[1:-1]))
    return strict and (values[-2] <= values[-1] if last_loose else values[-2] < values[-1])


@pytest.mark.parametrize("split", ["train", "test"])
def test_families_order_smooth_faces_natural_texture(split):
    families = ["smooth", "faces", "natural", "texture"]
    scores = {f: cx.score_set(make_background(f, 64, seed=0, size=64).images(16, split)) for f in families}
    agree = [m for m in cx.MEASURES if _ordered([scores[f][m] for f in families], last_loose=True)]
    assert len(agree) >= 2, (agree, scores)
    # and every measure puts smooth below every other family
    for m in cx.MEASURES:
        assert all(scores["smooth"][m] < scores[f][m] for f in families[2:]), m


def test_dead_leaves_knob_is_monotone():
    knob = [0.0, 0.25, 0.5, 0.75, 1.0]
    scores = [cx.score_set(make_background("dead_leaves", 64, seed=1, size=64, complexity=c).images(8))
              for c in knob]
    monotone = [m for m in cx.MEASURES if _ordered([s[m] for s in scores], last_loose=False)]
    assert len(monotone) >= 2 and {"gradient_magnitude", "spectral_slope"} <= set(monotone), (monotone, scores)
    # without texture the size/number law alone still raises the edge content
    plain = [cx.score_set(make_background("dead_leaves", 64, seed=1, size=64, complexity=c, texture=0.0)
                          .images(4), measures=["gradient_magnitude"])["gradient_magnitude"] for c in (0.0, 0.5, 1.0)]
    assert plain[0] < plain[1] < plain[2]
