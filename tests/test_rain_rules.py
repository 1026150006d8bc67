"""The co-authors' streak length rule, OpenCV's small Gaussian table and the patch-size rules of `rain`."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from probe.data.degradations import make_degradation
from probe.data.degradations.rain import Rain, drawn_length, opencv_gaussian_taps, streak_kernel
from probe.errors import ConfigError


def coauthor_kernel(L: int, angle: float) -> np.ndarray:
    """Independent reference: the L-pixel diagonal of an L x L matrix rotated by (angle - 45) degrees about
    its centre inside the same window (cv2.warpAffine, bilinear, zero border), rebuilt with scipy."""
    th = math.radians(angle - 45)
    a, b = math.cos(th), math.sin(th)
    c = (L - 1) / 2
    A = np.array([[a, b], [-b, a]])
    t = np.array([(1 - a) * c - b * c, b * c + (1 - a) * c])
    Ai, P = np.linalg.inv(A), np.array([[0, 1], [1, 0]])
    return ndimage.affine_transform(np.diag(np.ones(L)), P @ Ai @ P, offset=-(P @ Ai @ t), order=1, mode="constant")


def measured_length(k) -> float:
    """Length of the uniform segment with the kernel's variance along its major axis: sqrt(12 var)."""
    k = np.clip(np.asarray(k, float), 0, None)
    ys, xs = np.mgrid[0:k.shape[0], 0:k.shape[1]]
    w = k / k.sum()
    my, mx = (w * ys).sum(), (w * xs).sum()
    cov = np.array([[(w * (ys - my) ** 2).sum(), (w * (ys - my) * (xs - mx)).sum()],
                    [(w * (ys - my) * (xs - mx)).sum(), (w * (xs - mx) ** 2).sum()]])
    return math.sqrt(12 * np.linalg.eigvalsh(cov)[-1])


@pytest.mark.parametrize("angle", [-60.0, -45.0, -30.0, -10.0, 0.0, 20.0, 30.0, 45.0, 60.0, 75.0])
def test_streak_length_by_angle_follows_the_documented_window_rule(angle):
    L = 31
    rule = L / max(abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle))))
    ours = measured_length(streak_kernel(torch.tensor([float(L)]), torch.tensor([angle]))[0, 0].numpy())
    ref = measured_length(coauthor_kernel(L, angle))
    assert ours == pytest.approx(rule, rel=0.03)  # the documented rule
    assert ours == pytest.approx(ref, rel=0.04)  # the co-authors' kernel, rebuilt independently (aliased)
    exact = measured_length(streak_kernel(torch.tensor([float(L)]), torch.tensor([angle]),
                                          length_rule="exact")[0, 0].numpy())
    assert exact == pytest.approx(L, rel=0.03)
    assert float(drawn_length(torch.tensor([31.0]), torch.tensor([angle]))) == pytest.approx(rule)


def test_rendered_rain_reports_the_drawn_length():
    out = Rain(length=40, angle=45, width=[1], scale="none").apply(torch.zeros(2, 3, 64, 64),
                                                                   torch.Generator().manual_seed(0))
    assert torch.allclose(out.params["streak_px"], torch.full((2,), 40 * math.sqrt(2)))
    assert torch.allclose(out.params["length_px"], torch.full((2,), 40.0))


def test_opencv_small_gaussian_table():
    assert opencv_gaussian_taps(5) == (0.0625, 0.25, 0.375, 0.25, 0.0625)
    assert sum(opencv_gaussian_taps(9)) == pytest.approx(1.0)
    cv2 = pytest.importorskip("cv2")
    for w in (3, 5, 7, 9):
        np.testing.assert_allclose(cv2.getGaussianKernel(w, 0).ravel(), opencv_gaussian_taps(w), atol=1e-7)


def coverage(scale: str, patch: int) -> float:
    rain = Rain(preset="small", scale=scale, beta=1.0)
    out = rain.apply(torch.zeros(64, 3, patch, patch), torch.Generator().manual_seed(0))
    return float(out.mask.mean())


def test_patch_size_rules():
    # zoom: covered fraction about constant across patch sizes; length: shrinks with the patch
    zoom = coverage("zoom", 128), coverage("zoom", 64)
    length = coverage("length", 128), coverage("length", 64)
    assert length[0] == pytest.approx(zoom[0], rel=1e-6)  # identical at the reference patch
    assert length[1] < 0.7 * length[0]
    assert zoom[1] == pytest.approx(zoom[0], rel=0.1)
    p = Rain(preset="medium", scale="zoom").apply(torch.zeros(4, 3, 64, 64), torch.Generator().manual_seed(1)).params
    w = p["width"].double()
    assert set(p["width_px"].tolist()) <= {1.0, 3.0}
    assert torch.allclose(p["amount_px"].double(), p["amount"].double() * 2 * (w + 1) / (p["width_px"].double() + 1))
    none = Rain(preset="small", scale="none").apply(torch.zeros(2, 3, 64, 64), torch.Generator().manual_seed(1))
    assert torch.equal(none.params["length_px"], none.params["length"])
    assert Rain(length_scale=False).scale == "none" and Rain().describe()["scale"] == "length"


def test_reflect_border_equals_convolution_of_the_reflected_seed_map():
    from scipy.signal import fftconvolve

    from probe.data.degradations.rain import render_rain, sample_seeds

    n, h, w = 3, 40, 56
    length = torch.tensor([20.0, 31.0, 12.0], dtype=torch.float64)
    angle = torch.tensor([0.0, 45.0, -70.0], dtype=torch.float64)
    width = torch.tensor([1, 5, 3])
    image, position, value = sample_seeds(torch.tensor([0.01, 0.02, 0.005], dtype=torch.float64), h * w,
                                          torch.Generator().manual_seed(0))
    r = render_rain((n, h, w), image, position, value, length, angle, width, dtype=torch.float64, border="reflect")
    kernel = streak_kernel(length, angle, width, spread=True)
    for i in range(n):
        seeds = np.zeros(h * w)
        seeds[position[image == i].numpy()] = value[image == i].numpy()
        k = kernel[i, 0].numpy()
        pad = k.shape[0] // 2  # numpy "reflect" = OpenCV BORDER_REFLECT_101
        ref = fftconvolve(np.pad(seeds.reshape(h, w), pad, mode="reflect"), k, mode="same")[pad:-pad, pad:-pad]
        np.testing.assert_allclose(r[i, 0].numpy(), (ref - ref.min()) / (ref.max() - ref.min()), atol=1e-9)
    # rain density falls off less at the edge (mirrored streaks partly overlap their originals)
    edge = {}
    for border in ("zero", "reflect"):
        m = Rain(preset="small", border=border, scale="none").apply(torch.zeros(32, 3, 64, 64),
                                                                   torch.Generator().manual_seed(2)).mask
        edge[border] = float(m[..., :4, :].mean() / m[..., 24:40, :].mean())
    assert edge["zero"] < 0.7 and edge["reflect"] > edge["zero"] + 0.1


def test_integer_draws_and_bad_rules():
    p = Rain(preset="random", integer=True).sample_params(200, torch.Generator().manual_seed(0))
    assert torch.equal(p["length"], p["length"].round()) and torch.equal(p["angle"], p["angle"].round())
    for spec, needle in [({"length_rule": "diag"}, "'length_rule'"), ({"scale": "area"}, "'scale'"),
                         ({"scale": "zoom", "length_scale": False}, "'length_scale'"),
                         ({"integer": 1}, "'integer'"), ({"border": "wrap"}, "'border'")]:
        with pytest.raises(ConfigError, match=needle):
            make_degradation({"type": "rain", **spec})
