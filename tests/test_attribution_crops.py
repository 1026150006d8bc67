"""Exact crops (issue 24): a receptive-field bound from what the network runs, or an exact test on the first
image, else full images — and a network whose influence reaches beyond the old two-point check is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from probe.methods.integrated_gradients import ObjectiveForward, path_integrated_gradients
from probe.methods.objectives import make_context, make_objective
from probe.methods.receptive_field import receptive_reach
from probe.methods.windows import Window


class Banded(nn.Module):
    """Identity plus a 15x15 branch that only responds to inputs in (0.3, 0.4): on a path from zero to an
    image of values ~0.9 its gradient is zero at alpha 0.5 and 1 (where the old crop check looked) but not
    at alpha ~0.4 — its influence reaches 7 px further than those two points show."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(3, 3, 15, padding=7, bias=False)
        nn.init.constant_(self.wide.weight, 0.01)
        self.local = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        band = F.relu(x - 0.3) - F.relu(x - 0.4)
        return x + 0.1 * self.local(x) + self.wide(band)


def _fwd(model, size=64, n=2):
    objective = make_objective("window_sum")
    win = Window.square([24] * n, [24] * n, 8)
    ctx = make_context(objective, win, (size, size))
    return ObjectiveForward(model, objective, context_keys=tuple(ctx)), tuple(ctx.values())


def test_receptive_reach_of_known_structures():
    conv = lambda k, d=1: nn.Conv2d(3, 3, k, padding=d * (k // 2), dilation=d)  # noqa: E731
    x = torch.rand(1, 3, 32, 32)
    assert receptive_reach(nn.Sequential(conv(3), nn.ReLU(), conv(5)), x).reach == 3
    assert receptive_reach(nn.Sequential(conv(3, d=2), nn.BatchNorm2d(3).eval()), x).reach == 2
    assert receptive_reach(Banded().eval(), x).reach == 7 + 1  # parallel branches summed: an upper bound

    class Global(nn.Module):
        def forward(self, t):
            return t + t.mean((-2, -1), keepdim=True)

    for net, why in ((Global(), "mean"), (nn.Conv2d(3, 3, 3, stride=2, padding=1), "strided"),
                     (nn.Upsample(scale_factor=2), "interpolate")):
        bound = receptive_reach(net, x)
        assert bound.reach is None and why in bound.reason, bound


def test_influence_beyond_the_two_point_check_still_gets_exact_attributions():
    torch.manual_seed(0)
    model = Banded().eval()
    x = 0.85 + 0.1 * torch.rand(2, 3, 64, 64)
    fwd, extra = _fwd(model)
    full = path_integrated_gradients(fwd, x, additional=extra, steps=24, crop=None)
    auto = path_integrated_gradients(fwd, x, additional=extra, steps=24, crop="auto")
    assert auto.info["crop_kind"] == "receptive_field" and auto.info["crop"] is not None
    assert auto.info["network_reach"] == 8
    scale = float(full.attributions[0].abs().max())
    assert float((auto.attributions[0] - full.attributions[0]).abs().max()) <= 1e-5 * scale
    # the wide branch really contributes beyond the 3x3 reach: attribution outside window ± 2 px is nonzero
    outside = full.attributions[0].clone()
    outside[..., 22:34, 22:34] = 0
    assert float(outside.abs().max()) > 1e-3 * scale


class Opaque(nn.Module):
    """A local network the tracer cannot bound (an unknown operation): falls back to the exact test."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.flip(torch.flip(x, [-1]), [-1]))


@pytest.mark.parametrize("n", [1, 3])
def test_without_a_bound_the_first_image_is_tested_exactly(n):
    torch.manual_seed(0)
    model = Opaque().eval()
    x = torch.rand(n, 3, 64, 64)
    fwd, extra = _fwd(model, n=n)
    full = path_integrated_gradients(fwd, x, additional=extra, steps=8, crop=None)
    auto = path_integrated_gradients(fwd, x, additional=extra, steps=8, crop="auto")
    assert "flip" in auto.info["crop_reason"]
    assert auto.info["crop_kind"] == ("exact_test" if n > 1 else "full")
    scale = float(full.attributions[0].abs().max())
    assert float((auto.attributions[0] - full.attributions[0]).abs().max()) <= 1e-5 * scale


def test_probe_stores_which_crop_it_used():
    from probe.data.degradations import make_degradation
    from probe.probes import PROBES
    from probe.probes.base import EvalData

    clean = 0.25 + 0.5 * torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    batch = make_degradation({"type": "rain", "preset": "small"}).apply(clean, torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)).eval()
    res = PROBES.get("attribution")(n_images=1, steps=4, window=8, windows=["on"], faithfulness=False).run(
        model, EvalData({"ood": batch}))
    assert res.arrays["attribution"].attrs["crop"].startswith("receptive_field")
