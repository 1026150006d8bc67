"""Degradations: the rain streak model (geometry, statistics, exactness), noise, blur, and spec validation."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from probe.data.degradations import DEGRADATIONS, make_degradation
from probe.data.degradations.base import Choice, Intervals, Uniform
from probe.data.degradations.rain import (
    MASK_THRESHOLD,
    PRESETS,
    Rain,
    line_taps,
    render_rain,
    sample_seeds,
    streak_kernel,
)
from probe.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=gen(seed))


def streak_angle(r: torch.Tensor) -> float:
    """Orientation of the mass of R (degrees from vertical, positive = lower end to the right)."""
    r = r.double()
    h, w = r.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    m = r.sum()
    my, mx = (r * yy).sum() / m, (r * xx).sum() / m
    cyy = (r * (yy - my) ** 2).sum() / m
    cxx = (r * (xx - mx) ** 2).sum() / m
    cxy = (r * (xx - mx) * (yy - my)).sum() / m
    # principal axis (x, y) = (sin a, cos a): tan(2a) = 2 cxy / (cyy - cxx)
    return math.degrees(0.5 * math.atan2(2 * float(cxy), float(cyy - cxx)))


def structure_angle(r: torch.Tensor) -> float:
    """Dominant streak orientation of an image from its structure tensor (streaks ⟂ mean gradient)."""
    r = r.double()
    gy = r[1:, :-1] - r[:-1, :-1]
    gx = r[:-1, 1:] - r[:-1, :-1]
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    grad = 0.5 * math.atan2(2 * float(jxy), float(jxx - jyy))  # gradient direction from the x axis
    # the streak runs perpendicular to the gradient; convert to degrees from vertical (x = sin a, y = cos a)
    a = math.degrees(grad)  # gradient angle from x; streak angle from vertical equals -a (mod 180)
    return ((-a + 90) % 180) - 90


def angle_diff(a: float, b: float) -> float:
    return abs(((a - b) + 90) % 180 - 90)


# ---- the rain model -----------------------------------------------------------------------------------
def test_rain_is_deterministic_per_seed_and_differs_across_seeds():
    rain = Rain(preset="random")
    clean = images()
    a, b, c = rain.apply(clean, gen(5)), rain.apply(clean, gen(5)), rain.apply(clean, gen(6))
    for name in ("degraded", "layer", "mask", "soft_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not torch.equal(a.degraded, c.degraded)


@pytest.mark.parametrize("kind", ["rain", "noise", "blur"])
def test_degraded_is_clamp_of_clean_plus_layer_exactly(kind):
    spec = {"type": kind, "preset": "large"}
    out = make_degradation(spec).apply(images(size=40), gen(1))
    assert torch.equal(out.degraded, (out.clean + out.layer).clamp(0, 1))
    assert out.degraded.shape == out.clean.shape == out.layer.shape == (3, 3, 40, 40)
    assert out.mask.shape == out.soft_mask.shape == (3, 1, 40, 40)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert float(out.soft_mask.min()) >= 0 and float(out.soft_mask.max()) <= 1
    assert all(v.shape == (3,) and v.dtype == torch.float32 for v in out.params.values())


def test_rain_layer_mask_and_soft_mask_follow_the_model():
    out = Rain(preset="medium").apply(images(size=48), gen(2))
    r = out.soft_mask
    beta = out.params["beta"].view(-1, 1, 1, 1)
    assert torch.equal(out.layer, (beta * r).expand(-1, 3, -1, -1))
    assert torch.equal(out.mask, (r > MASK_THRESHOLD).float())
    flat = r.flatten(1)
    assert torch.allclose(flat.amax(1), torch.ones(3)) and torch.equal(flat.amin(1), torch.zeros(3))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_params_stay_in_their_ranges(preset):
    rain = Rain(preset=preset)
    table = PRESETS[preset]
    p = rain.sample_params(2000, gen(3))
    lo, hi = table["amount"]
    assert float(p["amount"].min()) >= lo and float(p["amount"].max()) <= hi
    lo, hi = table["length"]
    assert float(p["length"].min()) >= lo and float(p["length"].max()) <= hi
    lo, hi = table["angle"]
    assert float(p["angle"].min()) >= lo and float(p["angle"].max()) <= hi
    assert float(p["beta"].min()) >= 0.6 and float(p["beta"].max()) <= 1.0
    widths = table["width"]["values"] if isinstance(table["width"], dict) else table["width"]
    assert set(p["width"].tolist()) == set(float(w) for w in widths)
    # ranges are used, not collapsed: spread over most of each interval
    assert float(p["length"].max() - p["length"].min()) > 0.9 * (table["length"][1] - table["length"][0])
    # and the applied params (length scaled to the patch) agree
    out = rain.apply(images(2, 64), gen(4))
    assert torch.allclose(out.params["length_px"], out.params["length"] * 64 / 128)


def test_length_scale_can_be_disabled():
    out = Rain(preset="small", length_scale=False).apply(images(2, 32), gen(0))
    assert torch.equal(out.params["length_px"], out.params["length"])


def test_width_probabilities_are_respected():
    width = Rain(preset="medium").width  # {3, 5, 7} with .25 / .5 / .25
    draws = width.sample(8000, gen(7))
    for value, prob in zip([3.0, 5.0, 7.0], [0.25, 0.5, 0.25]):
        share = float((draws == value).double().mean())
        assert abs(share - prob) < 4 * math.sqrt(prob * (1 - prob) / 8000), (value, share)
    skewed = Choice.parse("rain", "width", {"values": [1, 9], "probs": [0.9, 0.1]}).sample(8000, gen(8))
    assert abs(float((skewed == 1).double().mean()) - 0.9) < 4 * math.sqrt(0.09 / 8000)


def test_disjoint_angle_intervals_never_sample_in_the_gaps():
    intervals = [[-60, -30], [10, 20], [40, 45]]
    rain = Rain(preset="random", angle=intervals)
    a = rain.sample_params(20000, gen(9))["angle"]
    inside = torch.zeros_like(a, dtype=torch.bool)
    for lo, hi in intervals:
        part = (a >= lo) & (a <= hi)
        inside |= part
        share = float(part.double().mean())  # interval chosen ∝ its width (30 : 10 : 5)
        expected = (hi - lo) / 45
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 20000)
    assert bool(inside.all())
    # a degenerate single point is allowed (constant angle)
    assert set(Intervals.parse("rain", "angle", [[7, 7]]).sample(50, gen(0)).tolist()) == {7.0}


def test_seed_process_matches_per_pixel_bernoulli_statistics():
    amount = torch.full((300,), 0.01, dtype=torch.float64)
    image, position, value = sample_seeds(amount, 32 * 32, gen(10))
    counts = torch.bincount(image, minlength=300).double()
    mean, var = 0.01 * 1024, 1024 * 0.01 * 0.99
    assert abs(float(counts.mean()) - mean) < 4 * math.sqrt(var / 300)
    assert 0.6 * var < float(counts.var()) < 1.5 * var  # binomial spread, not fixed counts
    assert float(value.min()) > 0.99 and float(value.max()) <= 1.0
    assert int(position.min()) >= 0 and int(position.max()) < 1024
    # no pixel holds two seeds, and positions are uniform over the image (both halves equally likely)
    assert len(set(zip(image.tolist(), position.tolist()))) == len(position)
    assert abs(float((position < 512).double().mean()) - 0.5) < 0.05
    none = sample_seeds(torch.tensor([0.0, 1.0], dtype=torch.float64), 100, gen(0))[0]
    assert torch.equal(torch.bincount(none, minlength=2), torch.tensor([0, 100]))


def test_measured_streak_density_grows_with_amount():
    fractions = []
    for amount in (0.001, 0.004, 0.016):
        rain = Rain(amount=amount, width=[1], length=20, angle=0, length_scale=False)
        out = rain.apply(torch.zeros(4, 3, 64, 64), gen(11))
        fractions.append(float(out.mask.mean()))
    assert fractions[0] < fractions[1] < fractions[2]
    assert fractions[1] > 2 * fractions[0]


@pytest.mark.parametrize("angle", [-75.0, -40.0, -12.0, 0.0, 25.0, 45.0, 60.0, 88.0])
def test_single_streak_angle_and_length_match_the_parameters(angle):
    n, h, w, length = 2, 64, 64, 41.0
    image = torch.tensor([0, 1])
    position = torch.tensor([32 * w + 32, 30 * w + 33])
    r = render_rain((n, h, w), image, position, torch.ones(2, dtype=torch.float64),
                    torch.full((2,), length, dtype=torch.float64), torch.full((2,), angle, dtype=torch.float64),
                    torch.tensor([1, 5]))
    for i in range(n):
        assert angle_diff(streak_angle(r[i, 0]), angle) < 1.0
        # extent along the streak direction ≈ length (mask of the unblurred line)
        if i == 0:
            ys, xs = torch.nonzero(r[i, 0] > 0.05, as_tuple=True)
            t = math.radians(angle)
            along = (xs - 32) * math.sin(t) + (ys - 32) * math.cos(t)
            drawn = length / max(abs(math.cos(t)), abs(math.sin(t)))  # the co-authors' window rule
            assert abs(float(along.max() - along.min()) - drawn) < 3


def test_streak_angle_of_full_rain_images_matches_sampled_angle():
    rain = Rain(preset="medium", angle=[[-30, -10], [10, 30]])
    out = rain.apply(torch.zeros(6, 3, 64, 64), gen(12))
    for i in range(6):
        assert angle_diff(structure_angle(out.soft_mask[i, 0]), float(out.params["angle"][i])) < 5


def test_rendering_equals_fft_convolution_with_the_dense_streak_kernel():
    rain = Rain(preset="random")
    n, h, w = 4, 40, 56
    p = rain.sample_params(n, gen(13))
    image, position, value = sample_seeds(p["amount"], h * w, gen(14))
    length = p["length"] * h / 128
    r = render_rain((n, h, w), image, position, value, length, p["angle"], p["width"], dtype=torch.float64)
    kernel = streak_kernel(length, p["angle"], p["width"], spread=True)
    for i in range(n):
        seeds = np.zeros(h * w)
        seeds[position[image == i].numpy()] = value[image == i].numpy()
        ref = fftconvolve(seeds.reshape(h, w), kernel[i, 0].numpy(), mode="same")
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        np.testing.assert_allclose(r[i, 0].numpy(), ref, atol=1e-9)
    # rendering in chunks, or from seeds in any order, changes nothing
    perm = torch.randperm(len(image), generator=gen(15))
    again = render_rain((n, h, w), image[perm], position[perm], value[perm], length, p["angle"], p["width"],
                        dtype=torch.float64, chunk=3)
    torch.testing.assert_close(again, r, rtol=0, atol=1e-12)


def test_benchmark_reference_builds_the_same_kernel():
    spec = importlib.util.spec_from_file_location("rain_synthesis", ROOT / "benchmarks" / "rain_synthesis.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for length, angle, width in [(30.0, 0.0, 1), (41.5, -37.0, 5), (55.0, 60.0, 9), (12.0, 89.0, 3)]:
        ours = streak_kernel(torch.tensor([length], dtype=torch.float64),
                             torch.tensor([angle], dtype=torch.float64), torch.tensor([width]), spread=True)[0, 0]
        ref = bench.reference_kernel(length, angle, width)
        pad = (ref.shape[0] - ours.shape[0]) // 2
        np.testing.assert_allclose(ref[pad:ref.shape[0] - pad, pad:ref.shape[0] - pad], ours.numpy(), atol=1e-9)
        assert np.abs(ref).sum() == pytest.approx(float(ours.abs().sum()))


def test_line_taps_are_point_symmetric_and_have_the_right_mass():
    dy, dx, weight = line_taps(torch.tensor([25.0, 30.0, 17.5]), torch.tensor([0.0, 33.0, -70.0]))
    for i, (length, angle) in enumerate([(25.0, 0.0), (30.0, 33.0), (17.5, -70.0)]):
        taps = {}
        for a, b, c in zip(dy[i].tolist(), dx[i].tolist(), weight[i].tolist()):
            taps[(a, b)] = taps.get((a, b), 0.0) + c
        for (a, b), c in taps.items():
            assert taps.get((-a, -b), 0.0) == pytest.approx(c, abs=1e-12)
        major = max(abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle))))
        assert sum(taps.values()) == pytest.approx(length * major, abs=1e-9)


def test_rain_without_seeds_is_an_empty_layer():
    out = Rain(amount=0.0).apply(images(2), gen(0))
    assert float(out.layer.abs().max()) == 0 and torch.equal(out.degraded, out.clean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rain_on_cuda_matches_cpu():
    rain = Rain(preset="random")
    clean = images(4, 64)
    cpu = rain.apply(clean, gen(3))
    gpu = rain.apply(clean.cuda(), gen(3))
    assert gpu.degraded.is_cuda and gpu.params["amount"].is_cuda
    assert torch.allclose(gpu.soft_mask.cpu(), cpu.soft_mask, atol=1e-5)


# ---- noise and blur -----------------------------------------------------------------------------------
def test_gaussian_noise_has_the_requested_sigma_and_full_mask():
    noise = make_degradation({"type": "noise", "sigma": [20, 20]})
    out = noise.apply(torch.full((2, 3, 64, 64), 0.5), gen(0))
    assert float(out.layer.std()) * 255 == pytest.approx(20, rel=0.05)
    assert abs(float(out.layer.mean())) < 0.003
    assert torch.equal(out.mask, torch.ones_like(out.mask))
    assert torch.equal(out.params["sigma"], torch.full((2,), 20.0))


def test_poisson_noise_variance_follows_intensity_over_scale():
    noise = make_degradation({"type": "noise", "kind": "poisson", "scale": 100})
    out = noise.apply(torch.full((2, 3, 64, 64), 0.4), gen(1))
    assert float(out.layer.var()) == pytest.approx(0.4 / 100, rel=0.1)
    assert float(out.layer.mean()) == pytest.approx(0.0, abs=0.005)


def test_gaussian_blur_keeps_flat_images_and_smooths_edges():
    blur = make_degradation({"type": "blur", "sigma": 2.0})
    flat = blur.apply(torch.full((1, 3, 32, 32), 0.3), gen(0))
    assert float(flat.layer.abs().max()) < 1e-6 and float(flat.mask.sum()) == 0  # reflect padding
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 1.0
    out = blur.apply(edge, gen(0))
    assert torch.allclose(out.degraded[0, 0, :, 16], torch.full((32,), 0.5), atol=0.11)
    mask_cols = out.mask[0, 0].sum(0)
    assert mask_cols[13:19].min() == 32 and mask_cols[:8].sum() == 0 and mask_cols[-8:].sum() == 0


def test_motion_blur_spreads_a_point_along_its_angle():
    for angle in (0.0, 30.0, -60.0, 90.0):
        blur = make_degradation({"type": "blur", "kind": "motion", "size": 15, "angle": angle})
        dot = torch.zeros(1, 3, 48, 48)
        dot[..., 24, 24] = 1.0
        out = blur.apply(dot, gen(0))
        spread = out.degraded[0, 0]
        assert float(spread.sum()) == pytest.approx(1.0, abs=1e-4)
        assert angle_diff(streak_angle(spread.clamp_min(0)), angle) < 1.5
    # horizontal motion leaves horizontal stripes unchanged, blurs vertical ones
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::4, :] = 1.0
    blur = make_degradation({"type": "blur", "kind": "motion", "size": 9, "angle": 90})
    assert float(blur.apply(stripes, gen(0)).layer.abs().max()) < 1e-5
    assert float(blur.apply(stripes.transpose(-1, -2), gen(0)).layer.abs().max()) > 0.3


def test_blur_kernel_larger_than_image_is_a_clear_error():
    with pytest.raises(DataError, match="radius"):
        make_degradation({"type": "blur", "sigma": 5}).apply(torch.rand(1, 3, 10, 10), gen(0))


# ---- specs and errors ---------------------------------------------------------------------------------
def test_registry_and_describe_are_json_ready():
    assert DEGRADATIONS.names() == ["blur", "defocus", "noise", "noise_correlated", "rain", "rain_particles"]
    for kind in DEGRADATIONS.names():
        deg = make_degradation({"type": kind})
        described = json.loads(json.dumps(deg.describe()))
        assert described["type"] == kind and described["preset"] == "small"
    rain = make_degradation({"type": "rain", "preset": "small", "width": {"values": [1, 3, 5], "probs": [.2, .3, .5]}})
    assert make_degradation(rain) is rain
    assert rain.describe()["width"] == {"values": [1, 3, 5], "probs": [0.2, 0.3, 0.5]}
    assert rain.describe()["amount"] == [0.002, 0.004]  # from the preset


@pytest.mark.parametrize("spec, needle", [
    ({"type": "rain", "preset": "huge"}, "'huge'"),
    ({"type": "rain", "amount": -0.1}, "'amount'"),
    ({"type": "rain", "amount": [0.01, 0.002]}, "'amount'"),
    ({"type": "rain", "length": [40, 30]}, "lo <= hi"),
    ({"type": "rain", "colour": "blue"}, "'colour'"),
    ({"type": "rain", "width": [2, 3]}, "'width'"),
    ({"type": "rain", "width": {"values": [1, 3], "probs": [0.3, 0.3]}}, "sum to 1"),
    ({"type": "rain", "width": {"values": [1, 3], "weights": [0.5, 0.5]}}, "'weights'"),
    ({"type": "rain", "angle": [[-30, 10], [0, 30]]}, "overlap"),
    ({"type": "rain", "angle": [-100, 10]}, "'angle'"),
    ({"type": "rain", "beta": "strong"}, "'beta'"),
    ({"type": "rain", "length_scale": "yes"}, "'length_scale'"),
    ({"type": "noise", "kind": "speckle"}, "'speckle'"),
    ({"type": "noise", "scale": [1, 2]}, "'scale'"),
    ({"type": "noise", "sigma": [-1, 5]}, "'sigma'"),
    ({"type": "blur", "kind": "motion", "sigma": 1}, "'sigma'"),
    ({"type": "fog"}, "'fog'"),
    ({"preset": "small"}, "'type'"),
])
def test_bad_specs_raise_config_errors_naming_the_culprit(spec, needle):
    with pytest.raises(ConfigError) as info:
        make_degradation(spec)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_images_and_generators_are_rejected():
    rain = Rain()
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        rain.apply(torch.rand(3, 32, 32), gen(0))
    with pytest.raises(DataError, match="floating"):
        rain.apply(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), gen(0))
    with pytest.raises(ConfigError, match="generator"):
        rain.apply(torch.rand(1, 3, 8, 8), 0)


def test_uniform_parse_accepts_constants_and_rejects_nonsense():
    assert Uniform.parse("x", "k", 3).describe() == [3.0, 3.0]
    for bad in ([1, 2, 3], [float("nan"), 1], True, "1"):
        with pytest.raises(ConfigError, match="'k'"):
            Uniform.parse("x", "k", bad)
