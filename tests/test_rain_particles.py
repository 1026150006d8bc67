"""Particle rain (a second rain family differing in kind from the co-authors' streaks)."""

import json

import pytest
import torch

from probe.data.degradations import make_degradation
from probe.data.degradations.rain_particles import RainParticles, drop_taps
from probe.errors import ConfigError


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_composite_is_exact_seeded_and_mask_follows_alpha():
    deg = make_degradation({"type": "rain_particles", "preset": "medium"})
    x = torch.rand(4, 3, 64, 64, generator=gen(1))
    a, b = deg.apply(x, gen(0)), deg.apply(x, gen(0))
    assert torch.equal(a.degraded, b.degraded) and torch.equal(a.layer, b.layer)
    assert not torch.equal(a.degraded, deg.apply(x, gen(1)).degraded)
    assert bool((a.degraded == (a.clean + a.layer).clamp(0, 1)).all())
    assert a.mask.shape == (4, 1, 64, 64) and 0.005 < float(a.mask.mean()) < 0.5
    assert float(a.soft_mask.amax()) == pytest.approx(1.0)
    assert bool((a.layer.abs().sum(1, keepdim=True)[a.soft_mask == 0] == 0).all())  # no rain outside α
    assert sorted(a.params) == ["amount", "angle", "brightness", "fan", "length", "length_px", "n_drops",
                                "opacity"]
    assert bool((a.params["n_drops"] > 0).all())


def test_layer_depends_on_the_background_unlike_additive_streaks():
    deg = RainParticles(preset="large")
    dark, bright = torch.full((1, 3, 64, 64), 0.1), torch.full((1, 3, 64, 64), 0.7)
    ld, lb = deg.apply(dark, gen(3)).layer, deg.apply(bright, gen(3)).layer
    rain = make_degradation({"type": "rain", "preset": "large"})
    assert torch.allclose(rain.apply(dark, gen(3)).layer, rain.apply(bright, gen(3)).layer)
    m = ld.abs() > 1e-3
    assert float((ld[m] - lb[m]).abs().mean()) > 0.05  # alpha blend: c - B changes with B


def test_streaks_are_tapered_and_vary_per_drop():
    dy, dx, w = drop_taps(torch.tensor([21.0, 9.0]), torch.tensor([0.0, 0.0]))
    head = w[0][(dy[0] == 10) & (dx[0] == 0)].sum()
    tail = w[0][(dy[0] == -10) & (dx[0] == 0)].sum()
    assert float(head) == pytest.approx(1.0, abs=0.05) and float(tail) == pytest.approx(0.25, abs=0.05)
    assert int((w[1] > 0).sum()) < int((w[0] > 0).sum())  # per-drop lengths


def test_perspective_fan_turns_streaks_on_the_two_sides():
    def lean(img):  # mean gx*gy of the structure tensor: < 0 for streaks whose lower end is to the right
        gy, gx = img[:, 1:, :-1] - img[:, :-1, :-1], img[:, :-1, 1:] - img[:, :-1, :-1]
        return float((gx * gy).mean())

    leans = {}
    for fan in (0.0, 20.0):
        deg = RainParticles(amount=0.003, length=60, angle=0, fan=fan, opacity=1.0, brightness=1.0)
        alpha = deg.apply(torch.zeros(8, 3, 128, 128), gen(0)).soft_mask[:, 0]
        leans[fan] = lean(alpha[:, :, :40]), lean(alpha[:, :, -40:])
    left, right = leans[20.0]
    assert left > 0 > right  # left side leans to the lower left, right side to the lower right
    assert max(map(abs, leans[0.0])) < 0.2 * min(abs(left), abs(right))  # no fan: only the 3 degree jitter


def test_describe_is_json_and_bad_specs_name_the_key():
    described = json.loads(json.dumps(RainParticles().describe()))
    assert described["type"] == "rain_particles" and described["preset"] == "small"
    for spec, needle in [({"amount": 0.5}, "'amount'"), ({"fan": [0, 90]}, "'fan'"), ({"width": 3}, "'width'"),
                         ({"angle": [[-30, 0], [-10, 10]]}, "overlap"), ({"preset": "huge"}, "'huge'")]:
        with pytest.raises(ConfigError, match=needle):
            make_degradation({"type": "rain_particles", **spec})
