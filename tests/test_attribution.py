"""Tests of the attribution objectives, engines, Diffusion Index and the ``attribution`` probe."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import spearmanr
from torch import nn

from probe.data.types import DegradedBatch
from probe.errors import ConfigError, DataError
from probe.methods.attribution_maps import (
    attribution_map,
    component_shares,
    diffusion_index,
    diffusion_index_corrected,
    effective_pixels,
    gini,
    region_shares,
)
from probe.methods.captum_methods import captum_attribute
from probe.methods.integrated_gradients import ObjectiveForward, path_integrated_gradients
from probe.methods.objectives import OBJECTIVES, make_context, make_objective, objective_from_json
from probe.methods.paths import gaussian_kernel, make_path, quadrature
from probe.methods.windows import Window, default_windows
from probe.probes import PROBES
from probe.probes.base import EvalData


def _conv_net(seed: int = 0, act: type[nn.Module] = nn.GELU, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), act(), nn.Conv2d(width, width, 3, padding=1), act(),
                         nn.Conv2d(width, 3, 3, padding=1)).eval()


def _forward(model, objective, window, shape, n_inputs=1, **ctx_kw):
    ctx = make_context(objective, window, shape, **ctx_kw)
    return ObjectiveForward(model, objective, n_inputs=n_inputs, context_keys=tuple(ctx)), tuple(ctx.values())


def _rain_batch(n: int = 3, size: int = 32, seed: int = 0) -> DegradedBatch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 3, size, size, generator=g) * 0.6
    rain = torch.zeros(n, 1, size, size)
    for i in range(n):
        for col in torch.randint(2, size - 2, (3,), generator=g).tolist():
            rain[i, 0, 2:size - 2, col] = 1.0
    layer = (0.7 * rain).expand(n, 3, size, size).clone()
    degraded = (clean + layer).clamp(0, 1)
    return DegradedBatch(degraded, clean, degraded - clean, (rain > 0.5).float(), rain,
                         {"beta": torch.full((n,), 0.7)})


# ------------------------------------------------------------------------------------------- objectives
def test_objectives_match_hand_computation():
    torch.manual_seed(0)
    out, x, clean = torch.rand(2, 3, 10, 10), torch.rand(2, 3, 10, 10), torch.rand(2, 3, 10, 10)
    mask = (torch.rand(2, 1, 10, 10) > 0.7).float()
    win = Window.square([1, 4], [2, 3], 4)
    shape = (10, 10)

    def ctx(obj):
        return make_context(obj, win, shape, clean=clean, mask=mask)

    o = make_objective("window_sum")
    assert torch.allclose(o(out, x, ctx(o)), torch.stack([out[0, :, 1:5, 2:6].sum(), out[1, :, 4:8, 3:7].sum()]))
    o = make_objective("pixel", channel=1)
    assert torch.allclose(o(out, x, ctx(o)), torch.stack([out[0, 1, 3, 4], out[1, 1, 6, 5]]))
    o = make_objective("removed")
    assert torch.allclose(o(out, x, ctx(o)), torch.stack([(x - out)[0, :, 1:5, 2:6].sum(),
                                                          (x - out)[1, :, 4:8, 3:7].sum()]))
    o = make_objective("lam", eps=0.0)
    dh = out[:, :, 1:, :-1] - out[:, :, :-1, :-1]
    dw = out[:, :, :-1, 1:] - out[:, :, :-1, :-1]
    energy = torch.sqrt(dh ** 2 + dw ** 2)
    assert torch.allclose(o(out, x, ctx(o)), torch.stack([energy[0, :, 1:5, 2:6].sum(),
                                                          energy[1, :, 4:8, 3:7].sum()]))
    o = make_objective("mask_rain")
    assert torch.allclose(o(out, x, ctx(o)), ((x - out) * mask).flatten(1).sum(1))
    o = make_objective("mask_background", quantity="energy")
    assert torch.allclose(o(out, x, ctx(o)), (out ** 2 * (1 - mask)).flatten(1).sum(1))
    o = make_objective("loss")
    assert torch.allclose(o(out, x, ctx(o)), (out - clean).abs().flatten(1).mean(1))
    o = make_objective("loss", region="window")
    assert torch.allclose(o(out, x, ctx(o))[0], (out - clean)[0, :, 1:5, 2:6].abs().mean())
    assert set(OBJECTIVES.names()) >= {"pixel", "window_sum", "lam", "removed", "mask_rain",
                                       "mask_background", "loss"}
    again = objective_from_json(o.to_json())
    assert again.name == "loss" and again.params == {"region": "window"}
    assert json.loads(o.to_json()) == {"name": "loss", "params": {"region": "window"}}
    with pytest.raises(ConfigError, match="quantity"):
        make_objective("mask_rain", quantity="bogus")
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_objective("lam", size=3)


def test_default_windows_land_on_and_off_rain():
    mask = torch.zeros(2, 1, 40, 40)
    mask[0, 0, 5:30, 30:33] = 1  # vertical streak near the right edge
    mask[1, 0, 20:24, 0:40] = 1  # horizontal band through the middle
    mask[1, 0, 0:10, 0:10] = 1   # and a dense block in the corner
    wins = default_windows(mask, 8, margin=0)
    on, off = wins["on"], wins["off"]
    on_mask, off_mask = on.mask((40, 40)), off.mask((40, 40))
    density_on = (on_mask * mask).flatten(1).sum(1) / 64
    density_off = (off_mask * mask).flatten(1).sum(1) / 64
    assert torch.all(density_off == 0)
    assert density_on[0] == pytest.approx(3 * 8 / 64) and density_on[1] == 1.0
    assert (int(on.top[1]), int(on.left[1])) == (2, 2)  # densest ties: nearest the centre
    assert on.left[0] <= 30 and on.left[0] + 8 >= 33
    # deterministic and, among the equally empty windows, the one nearest the image centre
    again = default_windows(mask.clone(), 8)
    assert torch.equal(again["off"].top, off.top) and torch.equal(again["off"].left, off.left)
    assert (int(off.top[0]), int(off.left[0])) == (16, 16)
    assert on.boxes().tolist()[1] == [2, 2, 8, 8]
    with pytest.raises(ConfigError, match="does not fit"):
        default_windows(mask, 64)


# -------------------------------------------------------------------------------------- path engine

def test_default_windows_keep_away_from_the_border():
    mask = torch.zeros(2, 1, 40, 40)
    mask[1, 0, 20:24, 0:40] = 1  # horizontal band through the middle
    mask[1, 0, 0:10, 0:10] = 1   # and a dense block in the corner: on the border, not chosen
    mask[0, 0, 0:40, 0:3] = 1    # rain only at the left border
    wins = default_windows(mask, 8)  # auto margin: max(8 // 2, 40 // 8) = 5 px
    for win in wins.values():
        assert bool((win.top >= 5).all() and (win.left >= 5).all())
        assert bool((win.top + 8 <= 35).all() and (win.left + 8 <= 35).all())
    density = (wins["on"].mask((40, 40)) * mask).flatten(1).sum(1) / 64
    assert float(density[1]) == 0.5  # the band, not the denser corner block

def test_ig_of_linear_network_is_input_times_weight():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 1)  # a fixed per-pixel linear map plus bias
    weight = model.weight.detach()[:, :, 0, 0]  # (out, in)
    x = torch.rand(2, 3, 12, 12)
    objective = make_objective("window_sum")
    win = Window.square([2, 5], [3, 1], 5)
    fwd, extra = _forward(model, objective, win, (12, 12))
    res = path_integrated_gradients(fwd, x, additional=extra, steps=4, internal_batch_size=3)
    expected = x * weight.sum(0).view(1, 3, 1, 1) * win.mask((12, 12))
    torch.testing.assert_close(res.attributions[0], expected, rtol=1e-5, atol=1e-6)
    # completeness: Σ IG = f(x) − f(0), reported as delta ≈ 0
    assert res.delta.abs().max() < 1e-4
    torch.testing.assert_close(res.attributions[0].flatten(1).sum(1), res.f_end - res.f_start,
                               rtol=1e-5, atol=1e-5)
    # captum's IG and Input×Gradient agree on a linear map
    cap = captum_attribute("captum_ig", fwd, x, additional=extra, steps=4)
    torch.testing.assert_close(cap.attributions[0], expected, rtol=1e-5, atol=1e-6)
    ixg = captum_attribute("input_x_gradient", fwd, x, additional=extra)
    torch.testing.assert_close(ixg.attributions[0], expected, rtol=1e-5, atol=1e-6)
    sal = captum_attribute("saliency", fwd, x, additional=extra)
    torch.testing.assert_close(sal.attributions[0], expected / x, rtol=1e-4, atol=1e-6)


def test_completeness_and_agreement_with_captum_on_nonlinear_net():
    model = _conv_net(1)
    x = torch.rand(2, 3, 24, 24)
    objective = make_objective("lam")
    fwd, extra = _forward(model, objective, Window.square([4, 10], [6, 8], 6), (24, 24))
    ours = path_integrated_gradients(fwd, x, additional=extra, steps=32, internal_batch_size=16)
    gap = (ours.attributions[0].flatten(1).sum(1) - (ours.f_end - ours.f_start)).abs()
    assert torch.allclose(gap, ours.delta.abs(), atol=1e-5)
    assert float(ours.relative_delta.max()) < 0.02
    cap = captum_attribute("captum_ig", fwd, x, additional=extra, steps=32)
    scale = cap.attributions[0].abs().max()
    assert float((ours.attributions[0] - cap.attributions[0]).abs().max()) < 1e-4 * float(scale)
    # a finer rule converges: the completeness gap shrinks
    fine = path_integrated_gradients(fwd, x, additional=extra, steps=128, method="riemann_trapezoid")
    coarse = path_integrated_gradients(fwd, x, additional=extra, steps=8, method="riemann_trapezoid")
    assert float(fine.delta.abs().sum()) < float(coarse.delta.abs().sum())


@pytest.mark.parametrize("path", ["linear", "blur"])
def test_internal_batching_equals_unbatched(path):
    model = _conv_net(2, nn.ReLU)
    x = torch.rand(3, 3, 20, 20)
    objective = make_objective("window_sum")
    fwd, extra = _forward(model, objective, Window.square([2, 8, 12], [3, 0, 9], 6), (20, 20))
    ref = path_integrated_gradients(fwd, x, additional=extra, steps=10, path=path, internal_batch_size=None)
    for ibs in (1, 2, 7):
        got = path_integrated_gradients(fwd, x, additional=extra, steps=10, path=path, internal_batch_size=ibs)
        torch.testing.assert_close(got.attributions[0], ref.attributions[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got.delta, ref.delta, rtol=1e-4, atol=1e-6)


def test_auto_crop_is_exact_for_local_nets_and_refused_for_global_ones():
    model = _conv_net(3)
    x = torch.rand(2, 3, 64, 64)
    objective = make_objective("lam")
    win = Window.square([10, 40], [12, 36], 8)
    fwd, extra = _forward(model, objective, win, (64, 64))
    full = path_integrated_gradients(fwd, x, additional=extra, steps=12, crop=None)
    for path in ("linear", "blur"):
        full = path_integrated_gradients(fwd, x, additional=extra, steps=12, path=path, crop=None)
        cropped = path_integrated_gradients(fwd, x, additional=extra, steps=12, path=path, crop="auto")
        assert cropped.info["crop"] is not None, cropped.info["crop_reason"]
        assert cropped.info["crop"]["height"] * cropped.info["crop"]["width"] < 0.6 * 64 * 64
        scale = float(full.attributions[0].abs().max())
        assert float((cropped.attributions[0] - full.attributions[0]).abs().max()) < 1e-4 * scale
        torch.testing.assert_close(cropped.delta, full.delta, rtol=1e-3, atol=1e-4)

    class GlobalMix(nn.Module):  # every output pixel depends on every input pixel
        def forward(self, t):
            return t + t.mean((-2, -1), keepdim=True)

    gfwd, gextra = _forward(GlobalMix(), make_objective("window_sum"), win, (64, 64))
    res = path_integrated_gradients(gfwd, x, additional=gextra, steps=4, crop="auto")
    assert res.info["crop"] is None and "most of" in res.info["crop_reason"]


def test_blur_path_endpoints_tangent_and_lam_reference_scheme():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    path = make_path("blur", sigma=1.2, kernel_size=9)
    one, zero = torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(path.point(x, None, one), x, rtol=0, atol=1e-6)  # σ = 0: the input
    kernel = gaussian_kernel(9, 1.2)
    blurred = np.stack([[ndimage.correlate(x[i, c].double().numpy(), kernel, mode="mirror") for c in range(3)]
                        for i in range(2)])
    np.testing.assert_allclose(path.point(x, None, zero).numpy(), blurred, rtol=1e-5, atol=1e-6)
    a, h = torch.full((2,), 0.4, dtype=torch.float64), 1e-3
    numeric = (path.point(x, None, a + h).double() - path.point(x, None, a - h).double()) / (2 * h)
    torch.testing.assert_close(path.tangent(x, None, a).double(), numeric, rtol=1e-2, atol=5e-4)
    # finite_difference reproduces Gu & Dong's Path_gradient loop (right points, kernel differences)
    model = _conv_net(4)
    objective = make_objective("lam")
    fwd, extra = _forward(model, objective, Window.square(4, 4, 6, n=2), (16, 16))
    steps = 6
    ours = path_integrated_gradients(fwd, x, additional=extra, path=path, steps=steps,
                                     method="finite_difference")
    sigmas = np.linspace(1.2, 0.0, steps + 1)
    kernels = [torch.from_numpy(gaussian_kernel(9, s)).float() for s in sigmas]
    ref = torch.zeros_like(x)
    for i in range(steps):
        img = _blur(x, kernels[i + 1]).requires_grad_(True)
        fwd(img, *extra).sum().backward()
        ref += img.grad * _blur(x, (kernels[i + 1] - kernels[i]) * steps) / steps
    torch.testing.assert_close(ours.attributions[0], ref, rtol=1e-4, atol=1e-6)
    assert ours.info["path"] == {"name": "blur", "params": {"sigma": 1.2, "kernel_size": 9}}


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    p = kernel.shape[-1] // 2
    weight = kernel.view(1, 1, *kernel.shape).repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, groups=x.shape[1])


def test_quadrature_rules():
    for method in ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"):
        a, w = quadrature(method, 7)
        assert w.sum() == pytest.approx(1.0) and a.min() >= 0 and a.max() <= 1
    a, w = quadrature("gausslegendre", 5)
    assert np.sum(w * a ** 9) == pytest.approx(0.1)  # exact for degree 2n − 1
    with pytest.raises(ConfigError, match="unknown quadrature"):
        quadrature("simpson", 5)


# ---------------------------------------------------------------------------------- component shares
def test_component_shares_of_identity_network():
    batch = _rain_batch(2, 24, seed=3)
    clean, layer = batch.clean, batch.degraded - batch.clean
    objective = make_objective("window_sum")
    win = Window.square([4, 6], [2, 10], 10)
    fwd, extra = _forward(nn.Identity(), objective, win, (24, 24), n_inputs=2)
    res = path_integrated_gradients(fwd, (clean, layer), additional=extra, steps=3)
    wm = win.mask((24, 24))
    torch.testing.assert_close(res.attributions[0], clean * wm, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(res.attributions[1], layer * wm, rtol=1e-6, atol=1e-7)
    shares = component_shares(res.attributions[0], res.attributions[1])
    rain_part = (layer * wm).flatten(1).sum(1).double()
    total = ((clean + layer) * wm).flatten(1).sum(1).double()
    np.testing.assert_allclose(shares["share_on_rain"], (rain_part / total).numpy(), rtol=1e-6)
    np.testing.assert_allclose(shares["rain_contribution"] + shares["background_contribution"],
                               res.f_end.double().numpy(), rtol=1e-5)
    amap = attribution_map(res.attributions[0] + res.attributions[1])
    reg = region_shares(amap, batch.mask)
    inside = (((clean + layer) * wm).sum(1, keepdim=True) * batch.mask).flatten(1).sum(1).double() / total
    np.testing.assert_allclose(reg["share_in_mask"], inside.numpy(), rtol=1e-6)
    np.testing.assert_allclose(reg["mask_fraction"], batch.mask.flatten(1).mean(1).double().numpy())


# -------------------------------------------------------------------------------------- diffusion index
def test_diffusion_index_delta_uniform_and_exact_gini():
    delta = np.zeros((32, 32))
    delta[5, 7] = 3.0
    di = diffusion_index(delta)
    # ≈ 100/n, plus ≈ 100·n·1e-7 from LAM's epsilon
    assert di.map_size == 1024 and di.value == pytest.approx(100 / 1024 + 1024e-5, abs=1e-3)
    assert diffusion_index_corrected(delta) == pytest.approx(0.0, abs=0.02)
    uniform = np.full((32, 32), 0.2)
    assert diffusion_index(uniform).value == pytest.approx(100.0, abs=1e-9)
    assert diffusion_index_corrected(uniform) == pytest.approx(100.0, abs=1e-9)
    # LAM's formula equals the mean-absolute-difference Gini (with LAM's shift and epsilon)
    rng = np.random.default_rng(0)
    v = rng.normal(size=300)
    shifted = v - v.min() + 1e-7
    mad = np.abs(shifted[:, None] - shifted[None, :]).sum() / (2 * len(v) * shifted.sum())
    assert gini(v) == pytest.approx(mad, rel=1e-10)
    # the map is |Σ_c A| (signs cancel across channels) and DI is scale invariant
    attr = torch.from_numpy(rng.normal(size=(3, 16, 16)))
    np.testing.assert_allclose(attribution_map(attr), np.abs(attr.numpy().sum(0)))
    assert diffusion_index(7 * attribution_map(attr)).value == pytest.approx(
        diffusion_index(attribution_map(attr)).value)
    # size-invariant companion: zero padding leaves the effective pixel count unchanged, DI drops
    blob = rng.random((8, 8))
    padded = np.pad(blob, 28)
    assert effective_pixels(padded) == pytest.approx(effective_pixels(blob))
    assert diffusion_index(padded).value < diffusion_index(blob).value
    assert np.isnan(diffusion_index(np.zeros((4, 4))).value)


# ------------------------------------------------------------------------------------- sanity checks
def test_model_randomisation_changes_the_attribution():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 3, 5, padding=2))
    with torch.no_grad():  # fixed structured weights: vertical 1-D filters only
        for conv in (model[0], model[2]):
            keep = torch.zeros_like(conv.weight)
            keep[..., 2] = 1
            conv.weight.mul_(keep)
    scaled, randomised = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for p in scaled.parameters():
            p.mul_(1.02)
    torch.manual_seed(1)
    for module in randomised.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    x = torch.rand(2, 3, 32, 32)
    objective = make_objective("window_sum")
    maps = []
    for m in (model, scaled, randomised):
        fwd, extra = _forward(m.eval(), objective, Window.square(12, 12, 4, n=2), (32, 32))
        maps.append(attribution_map(path_integrated_gradients(fwd, x, additional=extra, steps=16).attributions[0]))
    support = (maps[0] > 0) | (maps[2] > 0)
    assert spearmanr(maps[0][support], maps[1][support]).correlation > 0.95  # the check can see similarity
    assert spearmanr(maps[0][support], maps[2][support]).correlation < 0.5


def test_smoothgrad_is_seeded_and_tends_to_saliency():
    model = _conv_net(5)
    x = torch.rand(1, 3, 16, 16)
    objective = make_objective("pixel")
    fwd, extra = _forward(model, objective, Window.square(5, 5, 5, n=1), (16, 16))
    state = torch.get_rng_state()
    a = captum_attribute("smoothgrad", fwd, x, additional=extra, nt_samples=4, stdev=0.2, seed=3)
    b = captum_attribute("smoothgrad", fwd, x, additional=extra, nt_samples=4, stdev=0.2, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    assert torch.equal(a.attributions[0], b.attributions[0])
    tiny = captum_attribute("smoothgrad", fwd, x, additional=extra, nt_samples=3, stdev=1e-6, seed=0)
    sal = captum_attribute("saliency", fwd, x, additional=extra)
    torch.testing.assert_close(tiny.attributions[0], sal.attributions[0], rtol=1e-2, atol=1e-4)
    assert sal.info["kind"] == "gradient" and sal.delta is None


# ------------------------------------------------------------------------------------------- the probe
def _eval_data() -> EvalData:
    return EvalData({"id": _rain_batch(3, 32, seed=0), "ood": _rain_batch(3, 32, seed=1)}, seed=0)


def test_probe_end_to_end_named_dims_and_metrics():
    model = _conv_net(6, nn.ReLU)
    result = PROBES.get("attribution")(method="ig", n_images=2, steps=8, window=6).run(model, _eval_data())
    arr = result.arrays["attribution"]
    assert arr.dims == ("split", "window", "image", "y", "x") and arr.shape == (2, 2, 2, 32, 32)
    assert list(arr.coords["split"].values) == ["id", "ood"] and list(arr.coords["window"].values) == ["on", "off"]
    comp = result.arrays["attribution_component"]
    assert comp.dims == ("split", "window", "component", "image", "y", "x")
    assert result.arrays["input"].dims == ("split", "image", "channel", "y", "x")
    assert result.arrays["rain_mask"].dims == ("split", "image", "y", "x")
    boxes = result.arrays["window_box"]
    assert boxes.dims == ("split", "window", "image", "box") and int(boxes.sel(box="height")[0, 0, 0]) == 6
    im = result.arrays["image_metrics"]
    assert im.dims == ("split", "window", "image", "metric")
    assert json.loads(arr.attrs["objective"]) == {"name": "removed", "params": {}}
    # on-rain windows hold rain, off-rain windows hold none
    data = _eval_data()
    for split in ["id", "ood"]:
        for i in range(2):
            t, l_, hh, ww = boxes.sel(split=split, window="on")[i].values.tolist()
            assert float(data.splits[split].mask[i, 0, t:t + hh, l_:l_ + ww].sum()) > 0
            t, l_, hh, ww = boxes.sel(split=split, window="off")[i].values.tolist()
            assert float(data.splits[split].mask[i, 0, t:t + hh, l_:l_ + ww].sum()) == 0
    rows = {(r["split"], r["window"], r["metric"]): r["value"] for r in result.metrics}
    for metric in ("diffusion_index", "map_size", "share_on_rain", "share_in_mask", "convergence_delta"):
        assert ("ood", "on", metric) in rows
    assert rows[("id", "on", "map_size")] == 32 * 32
    assert 0 <= rows[("id", "on", "share_on_rain")] <= 1 and 0 <= rows[("id", "off", "share_in_mask")] <= 1
    assert rows[("id", "on", "relative_delta")] < 0.05
    assert all(r["method"] == "ig" and r["objective"] == "removed" for r in result.metrics)
    assert not any(r.get("flag") for r in result.metrics)
    # the map is the channel-summed abs of A_B + A_L
    np.testing.assert_allclose(im.sel(metric="diffusion_index").values[0, 0, 0],
                               diffusion_index(arr.values[0, 0, 0]).value, rtol=1e-5)


def test_probe_identity_network_share_is_the_rain_part():
    data = _eval_data()
    result = PROBES.get("attribution")(method="ig", n_images=2, steps=2, window=8, splits=["id"],
                                       objective="window_sum").run(nn.Identity(), data)
    batch = data.splits["id"][:2]
    boxes = result.arrays["window_box"].sel(split="id", window="on").values
    shares = result.arrays["image_metrics"].sel(split="id", window="on", metric="share_on_rain").values
    for i in range(2):
        t, l_, hh, ww = boxes[i].tolist()
        region = (slice(None), slice(t, t + hh), slice(l_, l_ + ww))
        rain = float((batch.degraded - batch.clean)[i][region].sum())
        assert shares[i] == pytest.approx(rain / float(batch.degraded[i][region].sum()), rel=1e-5)


def test_default_objective_gives_an_identity_network_no_attribution_and_says_why():
    """The default (removed part) measures the network: an identity removes nothing, so its map is all zero
    and every map metric is NaN with the reason, while a network that removes something gets numbers."""
    data = _eval_data()
    probe = PROBES.get("attribution")(n_images=2, steps=4, window=8, splits=["id"])
    ident = {(r["window"], r["metric"]): r for r in probe.run(nn.Identity(), data).metrics}
    for metric in ("diffusion_index", "share_on_rain", "share_in_mask"):
        row = ident[("on", metric)]
        assert math.isnan(row["value"]) and "zero attribution map" in row["flag"]
    assert ident[("on", "objective_value")]["value"] == 0.0
    trained = {(r["window"], r["metric"]): r for r in probe.run(_conv_net(6, nn.ReLU), data).metrics}
    di = trained[("on", "diffusion_index")]
    assert math.isfinite(di["value"]) and not di.get("flag")


def test_clean_baseline_share_on_rain_is_nan_with_the_reason():
    data = _eval_data()
    res = PROBES.get("attribution")(baseline="clean", n_images=2, steps=4, window=8, splits=["id"]).run(
        _conv_net(6, nn.ReLU), data)
    rows = {(r["window"], r["metric"]): r for r in res.metrics}
    for metric in ("share_on_rain", "background_contribution"):
        assert math.isnan(rows[("on", metric)]["value"]) and "baseline='clean'" in rows[("on", metric)]["flag"]
    assert np.isnan(res.arrays["image_metrics"].sel(metric="share_on_rain").values).all()
    assert math.isfinite(rows[("on", "rain_contribution")]["value"])


@pytest.mark.parametrize("method", ["lam", "saliency", "input_x_gradient", "smoothgrad"])
def test_probe_other_methods(method):
    model = _conv_net(7)
    probe = PROBES.get("attribution")(method=method, n_images=1, steps=6, window=6, smoothgrad_samples=2,
                                      splits=["ood"])
    assert probe.params["objective"] == ("lam_removed" if method == "lam" else "removed")
    result = probe.run(model, _eval_data())
    assert result.arrays["attribution"].shape == (1, 2, 1, 32, 32)
    assert ("attribution_component" in result.arrays) == (method in ("lam", "input_x_gradient"))
    metrics = {r["metric"] for r in result.metrics}
    assert "diffusion_index" in metrics and "share_in_mask" in metrics
    assert ("convergence_delta" in metrics) == (method == "lam")
    assert np.isfinite(result.arrays["attribution"].values).all()


def test_probe_window_free_objective_uses_one_full_window():
    result = PROBES.get("attribution")(objective="mask_rain", n_images=1, steps=4, splits=["id"]).run(
        _conv_net(8), _eval_data())
    assert list(result.arrays["attribution"].coords["window"].values) == ["full"]
    assert result.arrays["window_box"].values[0, 0, 0].tolist() == [0, 0, 32, 32]


def test_probe_rejects_bad_parameters():
    cls = PROBES.get("attribution")
    with pytest.raises(ConfigError, match="method"):
        cls(method="occlusion")
    with pytest.raises(ConfigError, match="objective"):
        cls(objective="nope")
    with pytest.raises(ConfigError, match="quantity"):
        cls(objective="mask_rain", objective_params={"quantity": "x"})
    with pytest.raises(ConfigError, match="baseline"):
        cls(method="lam", baseline="blur")
    with pytest.raises(ConfigError, match="windows"):
        cls(windows=["middle"])
    with pytest.raises(ConfigError, match="kernel_size"):
        cls(kernel_size=4)
    with pytest.raises(ConfigError, match="unknown parameter"):
        cls(n_steps=3)
    with pytest.raises(ConfigError, match="unknown split"):
        cls(splits=["nope"]).run(_conv_net(), _eval_data())
    with pytest.raises(DataError, match="mask must be"):
        default_windows(torch.zeros(8, 8), 2)
    with pytest.raises(ConfigError, match="one scalar per example"):
        path_integrated_gradients(lambda t: t, torch.rand(1, 3, 4, 4), steps=2)


@pytest.mark.parametrize("family", ["resnet", "unet", "swinir", "nafnet"])
def test_model_families_attribute_with_and_without_crop(family):
    from probe.models import build

    torch.manual_seed(0)
    model = build(family, size="tiny").eval()
    x = torch.rand(1, 3, 48, 48)
    objective = make_objective("window_sum")
    fwd, extra = _forward(model, objective, Window.square(4, 30, 8, n=1), (48, 48))
    full = path_integrated_gradients(fwd, x, additional=extra, steps=6, crop=None)
    auto = path_integrated_gradients(fwd, x, additional=extra, steps=6, crop="auto")
    scale = float(full.attributions[0].abs().max())
    assert scale > 0 and float((auto.attributions[0] - full.attributions[0]).abs().max()) <= 1e-4 * scale
    assert float(full.relative_delta.max()) < 0.05
    result = PROBES.get("attribution")(n_images=1, steps=4, window=8, splits=["id"]).run(
        model, EvalData({"id": _rain_batch(1, 48, seed=2)}))
    assert np.isfinite(result.arrays["image_metrics"].sel(metric="diffusion_index").values).all()
