"""Decoupled metrics and the generalization / decomposition probes on hand-built cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.data.types import DegradedBatch
from probe.metrics import mse_background, mse_rain, psnr, removal_ratio, ssim
from probe.probes import PROBES
from probe.probes.base import EvalData
from probe.probes.decomposition import QUANTITIES


def hand_batch(seed: int = 0, n: int = 3, size: int = 24) -> DegradedBatch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 3, size, size, generator=g) * 0.6
    rain = torch.zeros(n, 1, size, size)
    rain[:, :, :, 5:7] = 1.0  # vertical streaks
    rain[:, :, 3:20, 15] = 0.5
    layer = 0.8 * rain.expand(-1, 3, -1, -1)
    degraded = (clean + layer).clamp(0, 1)
    return DegradedBatch(degraded=degraded, clean=clean, layer=layer, mask=(rain > 50 / 255).float(),
                         soft_mask=rain, params={"beta": torch.full((n,), 0.8)})


class Oracle(nn.Module):
    """Returns the true background of any input it was built for (the perfect restorer)."""

    def __init__(self, batches: list[DegradedBatch]):
        super().__init__()
        self.inputs = torch.cat([b.degraded for b in batches])
        self.targets = torch.cat([b.clean for b in batches])
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = []
        for image in x:
            hits = (self.inputs == image).flatten(1).all(1).nonzero()
            assert len(hits), "oracle saw an unknown image"
            out.append(self.targets[hits[0, 0]])
        return torch.stack(out)


class Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x.clone()


def test_metric_values_on_hand_built_cases():
    b = hand_batch()
    assert torch.all(mse_rain(b.clean, b.clean, b.mask) == 0)
    assert torch.all(removal_ratio(b.clean, b.degraded, b.clean, b.mask) == 1)
    assert torch.all(removal_ratio(b.degraded, b.degraded, b.clean, b.mask) == 0)
    assert torch.all(mse_background(b.degraded, b.degraded, b.mask) == 0)
    # identity: error in the rain region is the rain itself; none outside
    expected = ((b.degraded - b.clean) ** 2).mean(1, keepdim=True)
    expected = (expected * b.mask).flatten(1).sum(1) / b.mask.flatten(1).sum(1)
    assert torch.allclose(mse_rain(b.degraded, b.clean, b.mask), expected.double())
    assert torch.allclose(mse_background(b.degraded, b.clean, b.mask), torch.zeros(3, dtype=torch.float64))
    assert torch.all(psnr(b.clean, b.clean) == 100)
    assert torch.allclose(ssim(b.clean, b.clean), torch.ones(3, dtype=torch.float64))
    assert torch.all(ssim(b.degraded, b.clean) < 1)
    half = b.clean + 0.5 * (b.degraded - b.clean)
    assert torch.allclose(removal_ratio(half, b.degraded, b.clean, b.mask), torch.full((3,), 0.5, dtype=torch.float64))


def _data() -> EvalData:
    id_split, ood = hand_batch(0), hand_batch(0)
    ood.layer = ood.layer.flip(-1)
    ood.mask, ood.soft_mask = ood.mask.flip(-1), ood.soft_mask.flip(-1)
    ood.degraded = (ood.clean + ood.layer).clamp(0, 1)
    return EvalData(splits={"id": id_split, "ood": ood}, info={"background": "hand"})


def _metrics(result) -> dict:
    return {(m["split"], m["metric"]): m["value"] for m in result.metrics}


def test_identity_network_removes_nothing_and_leaves_content():
    result = PROBES.get("decomposition")().run(Identity(), _data())
    m = _metrics(result)
    for split in ("id", "ood"):
        assert m[(split, "removal_ratio")] == pytest.approx(0, abs=1e-9)
        assert m[(split, "mse_bg")] == pytest.approx(0, abs=1e-12)
        assert m[(split, "mse_rain")] == pytest.approx(m[(split, "mse_rain_input")])
        assert m[(split, "content_damage")] == pytest.approx(0, abs=1e-12)
    assert m[("clean", "psnr")] == 100
    arr = result.arrays["per_image"]
    assert arr.dims == ("split", "image", "quantity") and list(arr.coords["quantity"].values) == QUANTITIES
    assert result.arrays["examples"].sizes["kind"] == 4


def test_oracle_network_removes_all_rain_with_zero_background_error():
    data = _data()
    result = PROBES.get("decomposition")().run(Oracle(list(data.splits.values()) + [
        DegradedBatch(data.clean, data.clean, data.clean * 0, data.clean[:, :1] * 0, data.clean[:, :1] * 0)]), data)
    m = _metrics(result)
    for split in ("id", "ood"):
        assert m[(split, "removal_ratio")] == pytest.approx(1)
        assert m[(split, "mse_rain")] == pytest.approx(0, abs=1e-12)
        assert m[(split, "mse_bg")] == pytest.approx(0, abs=1e-12)
        assert m[(split, "corr_removed_layer")] > 0.9
    gen = _metrics(PROBES.get("generalization")().run(Identity(), data))
    assert gen[("ood", "psnr")] == pytest.approx(gen[("ood", "psnr_input")])
    assert gen[("id", "psnr_gain")] == pytest.approx(0, abs=1e-9)


def test_probe_parameters_are_validated():
    from probe.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parameter 'bins'"):
        PROBES.get("decomposition")(bins=3)
    with pytest.raises(ConfigError, match="batch_size"):
        PROBES.get("generalization")(batch_size=0)
