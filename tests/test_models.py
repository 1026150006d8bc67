"""Model families: shapes on odd sizes, probe points and their order, fitting, determinism, specs.

Every test parametrised with ``FAMILY`` runs for each registered family, so a new family is covered by
adding it to ``probe.models.FAMILIES``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from probe.errors import ConfigError, DataError
from probe.models import FAMILIES, HookPoint, RestorationModel, build

FAMILY = pytest.mark.parametrize("family", [f for f in FAMILIES.names() if f != "external"])
#: families with the global-residual option (prior_restorer decodes the image itself and has none)
RESIDUAL = pytest.mark.parametrize(
    "family", [f for f in FAMILIES.names() if f != "external" and "global_residual" in FAMILIES.get(f).sizes["tiny"]])


def _direct(family: str) -> dict:
    """Options that make ``family`` predict the image directly (no global residual)."""
    return {"global_residual": False} if "global_residual" in FAMILIES.get(family).sizes["tiny"] else {}


def _tiny(family: str, seed: int = 0, **kwargs) -> RestorationModel:
    torch.manual_seed(seed)
    return build(family, "tiny", **kwargs)


def _record(model: RestorationModel) -> tuple[list[str], dict[str, torch.Tensor], list]:
    """Forward hooks on every HookPoint: (names in call order, outputs, handles)."""
    order: list[str] = []
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            def hook(_m, _inp, out, name=name):
                order.append(name)
                seen[name] = out
            handles.append(module.register_forward_hook(hook))
    return order, seen, handles


@FAMILY
@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (9, 8), (1, 1)])
def test_forward_keeps_shape_on_any_size(family, hw):
    model = _tiny(family).eval()
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


@FAMILY
def test_rejects_non_rgb_input(family):
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        _tiny(family)(torch.rand(1, 1, 16, 16))


@FAMILY
def test_probe_points_fire_once_in_declared_order(family):
    model = _tiny(family).eval()
    points = model.probe_points()
    assert points, "a family must declare probe points"
    assert {"hook_layer", "hook_output"} <= set(points)
    assert points[-2:] == ["hook_layer", "hook_output"]
    modules = dict(model.named_modules())
    assert all(isinstance(modules[p], HookPoint) for p in points)
    order, seen, handles = _record(model)
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    for handle in handles:
        handle.remove()
    assert order == points
    assert torch.equal(seen["hook_output"], y)
    assert seen["hook_layer"].shape == x.shape
    assert all(t.dim() == 4 and t.shape[0] == 1 for t in seen.values())  # NCHW maps everywhere


@FAMILY
def test_captured_activations_are_not_modified_later(family):
    """No in-place op touches a tensor after it passed a HookPoint: references equal snapshots."""
    model = _tiny(family).eval()
    refs, snaps = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            def hook(_m, _inp, out, name=name):
                refs[name] = out
                snaps[name] = out.detach().clone()
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, 3, 24, 40))
    assert refs.keys() == snaps.keys() == set(model.probe_points())
    for name in refs:
        assert torch.equal(refs[name], snaps[name]), name


@RESIDUAL
def test_global_residual_output_is_input_minus_layer(family):
    model = _tiny(family).eval()
    _, seen, _ = _record(model)
    x = torch.rand(2, 3, 21, 34)
    with torch.no_grad():
        y = model(x)
    assert model.hparams["global_residual"] is True
    torch.testing.assert_close(y, x - seen["hook_layer"], rtol=0, atol=0)


@FAMILY
def test_batch_items_are_independent(family):
    """No batch-coupled op (batch norm etc.): an image's output does not depend on its batch mates."""
    model = _tiny(family).eval()
    x = torch.rand(3, 3, 20, 20)
    with torch.no_grad():
        together = model(x)
        alone = model(x[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-5)


def _derain_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth 32 px background plus sparse bright 'rain' pixels (fixed)."""
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    rain = (torch.rand(2, 1, 32, 32, generator=g) > 0.9).float() * 0.5
    return (clean + rain).clamp(0, 1), clean


@FAMILY
def test_tiny_model_overfits_one_batch(family):
    degraded, clean = _derain_batch()
    model = _tiny(family).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses: list[float] = []
    for _ in range(300):  # Adam on one fixed batch; the tiny presets need ~20–80 steps
        loss = F.mse_loss(model(degraded), clean)
        losses.append(loss.item())
        if losses[-1] <= losses[0] / 10:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] <= losses[0] / 10, f"{family}: loss {losses[0]:.4g} → {losses[-1]:.4g} " \
        f"in {len(losses)} steps"


@FAMILY
def test_same_seed_gives_identical_init(family):
    a, b, c = _tiny(family, seed=3), _tiny(family, seed=3), _tiny(family, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@FAMILY
def test_spec_round_trips_through_build(family):
    model = _tiny(family, **_direct(family))
    spec = model.spec
    assert spec == {"family": family, "size": "tiny", "kwargs": _direct(family)}
    again = build(**spec)
    assert type(again) is type(model) and again.spec == spec
    assert getattr(again, "global_residual", False) is False
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    assert again.probe_points() == model.probe_points()


@FAMILY
def test_size_presets_grow_and_share_options(family):
    cls = FAMILIES.get(family)
    assert {"tiny", "small", "paper"} <= set(cls.sizes)  # the ladder every family has
    assert set(cls.sizes) - {"tiny", "small", "paper"} <= ({"fine"} if family == "prior_restorer" else set())
    assert len({frozenset(opts) for opts in cls.sizes.values()}) == 1  # same option names in every preset
    with torch.device("meta"):
        counts = [sum(p.numel() for p in build(family, s).parameters()) for s in ("tiny", "small", "paper")]
    assert counts[0] < counts[1] < counts[2]


@FAMILY
def test_bad_options_name_the_key(family):
    with pytest.raises(ConfigError, match="bogus"):
        build(family, "tiny", bogus=1)
    with pytest.raises(ConfigError, match="huge"):
        build(family, "huge")
    with pytest.raises(ConfigError, match="global_residual"):
        build(family, "tiny", global_residual="yes")


@RESIDUAL
def test_global_residual_off_predicts_the_image(family):
    on, off = _tiny(family, seed=5), _tiny(family, seed=5, global_residual=False)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        y_on, y_off = on(x), off(x)
    # same weights, so the "off" model outputs exactly the layer the "on" model subtracts
    torch.testing.assert_close(y_on, x - y_off, rtol=0, atol=1e-6)
    assert not torch.allclose(y_on, y_off)


def test_resnet_global_residual_flag_changes_the_output():
    on = _tiny("resnet", seed=1)
    off = _tiny("resnet", seed=1, global_residual=False)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (on(x) - off(x)).abs().mean() > 0.1
    assert on.probe_points() == off.probe_points()


def test_paper_presets_match_paper_a():
    resnet = FAMILIES.get("resnet").sizes["paper"]
    assert (resnet["n_blocks"], resnet["channels"]) == (16, 64)
    swin = FAMILIES.get("swinir").sizes["paper"]
    assert (swin["depths"], swin["embed_dim"], swin["num_heads"], swin["window_size"]) == ([6] * 4, 60, 6, 8)


def test_swinir_shift_mask_separates_wrapped_regions():
    from probe.models.swinir import shifted_window_mask

    mask = shifted_window_mask(16, 16, 8, 4)
    assert mask.shape == (4, 64, 64)
    assert (mask[0] == 0).all()  # top-left window: one region after the roll
    last = mask[3]  # bottom-right window: four regions (2×2 of 4×4 tokens) that must not attend across
    token = torch.arange(64)
    region = (token // 8 >= 4).long() * 2 + (token % 8 >= 4).long()
    assert torch.equal(last == 0, region[:, None] == region[None, :])
    assert set(last.unique().tolist()) == {0.0, -100.0}


def test_swinir_caches_masks_by_padded_size():
    model = _tiny("swinir").eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 17, 9))   # pads to 24 × 16
        model(torch.rand(1, 3, 20, 12))  # same padded size: cache hit
        model(torch.rand(1, 3, 8, 8))
    assert sorted(key[:2] for key in model._masks) == [(8, 8), (24, 16)]


def test_swinir_windows_see_only_their_window():
    """Without shifts (depth 1), changing a pixel in one 8×8 window leaves other windows' tokens intact
    after the first Swin block (before any conv mixes neighbours)."""
    from probe.models.swinir import SwinBlock

    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=8, shift=0, mlp_ratio=2.0).eval()
    x = torch.rand(1, 8, 16, 16)
    x2 = x.clone()
    x2[..., 2, 3] += 1.0  # inside the top-left window
    with torch.no_grad():
        d = (block(x, None) - block(x2, None)).abs().sum(1)[0]
    assert d[:8, :8].sum() > 0
    assert d[8:, :].max() == 0 and d[:, 8:].max() == 0
