"""Causal effect maps: an independent loop re-implementation of the authors' procedure, anchors of known
behaviour (identity: no effect; oracle: the known one), locality, and the probe end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from probe.errors import ConfigError
from probe.methods.causal_effect import PatchSampler, causal_effect_maps
from probe.models.anchors import Identity, Oracle, feed


def _net(seed: int = 0, k: int = 3, depth: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, k, padding=k // 2), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(8, 8, k, padding=k // 2), nn.ReLU()]
    layers.append(nn.Conv2d(8, 3, k, padding=k // 2))
    body = nn.Sequential(*layers)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x - 0.3 * self.body(x)

    return Residual().eval()


def _images(n=2, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=g)
    layer = 0.2 * (torch.rand(n, 1, size, size, generator=g) > 0.85).float().expand(n, 3, size, size)
    sources = 0.25 + 0.5 * torch.rand(3, 3, size, size, generator=g)
    return clean, layer.contiguous(), sources


def _reference_cem(model, clean, layer, roi, block, sampler, coarse, fine, tol):
    """The authors' procedure, written as a plain loop: one intervened image per forward, numpy PSNR."""
    t, l, rh, rw = roi
    n, _, h, w = clean.shape
    gy, gx = math.ceil(h / block), math.ceil(w / block)

    def psnr(out, gt):
        o = np.clip(out[:, t:t + rh, l:l + rw].astype(np.float64), 0, 1)
        mse = max(float(np.mean((o - gt[:, t:t + rh, l:l + rw]) ** 2)), 1e-10)
        return min(10 * math.log10(1 / mse), 100.0)

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)[None].float())[0].numpy()

    maps = np.zeros((n, gy, gx))
    for i in range(n):
        b, d = clean[i].numpy(), layer[i].numpy()
        p0 = psnr(run(np.clip(b + d, 0, 1)), b)
        for by in range(gy):
            for bx in range(gx):
                j = by * gx + bx
                y0, x0 = by * block, bx * block
                y1, x1 = min(h, y0 + block), min(w, x0 + block)

                def draw(k, i=i, j=j, b=b, d=d, box=(y0, y1, x0, x1)):
                    b2 = b.copy()
                    b2[:, box[0]:box[1], box[2]:box[3]] = sampler.patch(i, j, k, (box[1] - box[0],
                                                                                  box[3] - box[2])).numpy()
                    return psnr(run(np.clip(b2 + d, 0, 1)), b)

                vals = [draw(k) for k in range(coarse)]
                if max(abs(p0 - v) for v in vals) >= tol and fine > 0:
                    vals = [draw(coarse + k) for k in range(fine)]
                effect = p0 - float(np.mean(vals))
                maps[i, by, bx] = 0.0 if abs(effect) < tol else effect
    return maps


def test_matches_a_loop_reimplementation_of_the_authors_procedure():
    model = _net()
    clean, layer, sources = _images()
    sampler = PatchSampler(sources, seed=3)
    roi = (8, 8, 8, 8)
    res = causal_effect_maps(model, clean, layer, roi, block=4, sampler=sampler, coarse=2, fine=3, tol=0.01,
                             internal_batch_size=7)
    ref = _reference_cem(model, clean, layer, roi, 4, sampler, 2, 3, 0.01)
    assert res.effect.shape == (2, 6, 6)
    np.testing.assert_allclose(res.effect.numpy(), ref, atol=1e-4)
    assert (res.effect != 0).any() and (res.effect == 0).any()  # local net: effects near the ROI only
    assert int(res.draws.max()) == 3 and int(res.draws.min()) == 2  # coarse everywhere, fine where it matters


def test_identity_has_no_causal_effect_and_oracle_the_known_one():
    clean, layer, sources = _images(n=1)
    sampler = PatchSampler(sources, seed=0)
    roi = (8, 8, 8, 8)
    ident = causal_effect_maps(Identity().eval(), clean, layer, roi, block=4, sampler=sampler, coarse=2, fine=2)
    outside = ~ident.roi_block
    assert float(ident.effect[outside].abs().max()) == 0.0
    assert float(ident.background.abs().max()) == 0.0 and float(ident.rain.abs().max()) == 0.0

    oracle = Oracle().eval()
    feed(oracle, (clean + layer).clamp(0, 1), clean)
    res = causal_effect_maps(oracle, clean, layer, roi, block=4, sampler=sampler, coarse=2, fine=2,
                             feed=lambda x, b: feed(oracle, x, b))
    assert float(res.effect[~res.roi_block].abs().max()) == 0.0  # the ROI output is B there, whatever else
    assert float(res.psnr_origin[0]) == 100.0
    # inside the ROI: the output is the intervened background B', so the effect is 100 dB − PSNR(B', B)
    j = 2 * 6 + 2  # block (2, 2) = pixels 8..12, inside the ROI
    for k in range(2):
        patch = sampler.patch(0, j, k, (4, 4))
        mse = float((patch - clean[0, :, 8:12, 8:12]).double().pow(2).sum()) / (3 * 64)
        assert 10 * math.log10(1 / mse) < 100
    assert float(res.effect[0, 2, 2]) > 10.0
    # removal: follows the rain exactly (no clipping here), never the content
    assert float(res.background.abs().max()) < 1e-6
    assert abs(float(res.rain.sum()) - 1.0) < 1e-5


def test_effects_stay_inside_the_receptive_field():
    model = _net(depth=1)  # two 3x3 convs: reach 2 px
    clean, layer, sources = _images(n=1, size=32)
    res = causal_effect_maps(model, clean, layer, (12, 12, 8, 8), block=4, sampler=PatchSampler(sources),
                             coarse=1, fine=0, tol=1e-3)
    nonzero = torch.nonzero(res.effect[0].abs() > 0)  # float noise of batched convs stays below tol
    assert nonzero.numel() > 0
    assert int(nonzero.min()) >= 2 and int(nonzero.max()) <= 5  # blocks 2..5 span pixels 8..24 = ROI ± 4


def test_bad_arguments_raise_one_clear_error():
    clean, layer, sources = _images(n=1)
    with pytest.raises(ConfigError, match="roi"):
        causal_effect_maps(_net(), clean, layer, (20, 20, 8, 8), sampler=PatchSampler(sources))
    with pytest.raises(ConfigError, match="coarse"):
        causal_effect_maps(_net(), clean, layer, (4, 4, 8, 8), sampler=PatchSampler(sources), coarse=0)


def _eval(n=2, size=32, seed=0):
    from probe.data.degradations import make_degradation
    from probe.probes.base import EvalData

    g = torch.Generator().manual_seed(seed)
    clean = 0.25 + 0.5 * torch.rand(n, 3, size, size, generator=g)
    batch = make_degradation({"type": "rain", "preset": "small"}).apply(clean, torch.Generator().manual_seed(seed))
    return EvalData(splits={"ood": batch})


def test_probe_runs_on_a_network_and_the_anchors_with_indicators_and_faithfulness():
    from probe.probes import PROBES

    data = _eval()
    probe = PROBES.get("cem")(n_images=2, roi=8, block=8, coarse=1, fine=2, faithfulness_points=4)
    net = probe.run(_net(), data)
    rows = {r["metric"]: r for r in net.metrics}
    assert net.arrays["cem"].dims == ("split", "window", "image", "by", "bx")
    assert net.arrays["faithfulness"].sizes["curve"] == 4
    assert rows["rain_share"]["value"] > 0 and np.isfinite(rows["background_dependence"]["value"])
    assert rows["effect_reach"]["value"] <= 8 + 3  # a 3-layer 3x3 net reaches 3 px: the next block at most
    assert "ci_low" in rows["roi_psnr"] and "deletion_gain" in rows

    ident = {r["metric"]: r for r in probe.run(Identity().eval(), data).metrics}
    assert ident["background_dependence"]["value"] == 0 and ident["rain_dependence"]["value"] == 0
    assert np.isnan(ident["rain_share"]["value"]) and "removes nothing" in ident["rain_share"]["flag"]
    assert ident["positive_fraction"]["value"] == 0 and ident["negative_fraction"]["value"] == 0

    orc = {r["metric"]: r for r in probe.run(Oracle().eval(), data).metrics}
    assert orc["positive_fraction"]["value"] == 0 and orc["negative_fraction"]["value"] == 0
    assert orc["rain_dependence"]["value"] == pytest.approx(1.0, abs=1e-4)
    assert orc["rain_share"]["value"] > 0.5


def test_probe_rejects_bad_parameters_in_one_line():
    from probe.probes import PROBES

    with pytest.raises(ConfigError, match="'block'"):
        PROBES.get("cem")(block=0)
    with pytest.raises(ConfigError, match="'windows'"):
        PROBES.get("cem")(windows=["up"])
    with pytest.raises(ConfigError, match="must fit"):
        PROBES.get("cem")(roi=64).run(_net(), _eval(n=1, size=32))
