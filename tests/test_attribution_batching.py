"""internal_batch_size bounds the rows of every forward of every attribution method (issue 13 kind 6).

Counted with a tiny network that records the batch size of each call; results do not depend on the batching
(SmoothGrad: its noise draws do, so it is checked for the bound and for determinism)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.data.types import DegradedBatch
from probe.errors import ConfigError
from probe.methods.captum_methods import CAPTUM_METHODS, captum_attribute
from probe.methods.integrated_gradients import ObjectiveForward, path_integrated_gradients
from probe.probes import PROBES
from probe.probes.base import EvalData

METHODS = ["ig", "lam", "saliency", "input_x_gradient", "smoothgrad"]


class RowCounter(nn.Module):
    """A tiny conv net that records the rows (batch size) of every forward."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), nn.Conv2d(4, 3, 3, padding=1))
        self.rows: list[int] = []

    def forward(self, x):
        self.rows.append(int(x.shape[0]))
        return self.net(x)


def _batch(n: int, size: int = 16, seed: int = 0) -> DegradedBatch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 3, size, size, generator=g) * 0.6
    rain = torch.zeros(n, 1, size, size)
    rain[:, :, 2:size - 2, 5] = 1.0
    rain[:, :, 2:size - 2, 11] = 1.0
    layer = (0.7 * rain).expand(n, 3, size, size).clone()
    degraded = (clean + layer).clamp(0, 1)
    return DegradedBatch(degraded, clean, degraded - clean, rain, rain, {"beta": torch.full((n,), 0.7)})


def _run(method: str, ibs: int | None, n: int = 5):
    model = RowCounter().eval()
    probe = PROBES.get("attribution")(method=method, n_images=n, steps=4, window=4, smoothgrad_samples=4,
                                      internal_batch_size=ibs, splits=["id"], crop="none")
    result = probe.run(model, EvalData({"id": _batch(n)}, seed=0))
    return model.rows, result.arrays["attribution"].values


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ibs", [1, 3])
def test_probe_rows_per_forward_are_bounded(method, ibs):
    rows, maps = _run(method, ibs)
    assert rows and max(rows) <= ibs, f"{method}: forwards of {sorted(set(rows))} rows with internal_batch_size={ibs}"
    assert np.isfinite(maps).all()
    unbounded, _ = _run(method, None)
    assert max(unbounded) > ibs  # the counter can see a violation: unbatched runs use more rows


@pytest.mark.parametrize("method", ["ig", "lam", "saliency", "input_x_gradient"])
def test_batching_does_not_change_the_result(method):
    _, small = _run(method, 2)
    _, whole = _run(method, None)
    np.testing.assert_allclose(small, whole, rtol=1e-4, atol=1e-7)


def test_smoothgrad_batched_is_deterministic():
    _, a = _run("smoothgrad", 3)
    _, b = _run("smoothgrad", 3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", sorted(CAPTUM_METHODS))
def test_captum_methods_bound_rows_and_keep_results(method):
    model = RowCounter(1).eval()
    fwd = ObjectiveForward(model, lambda out, x, ctx: out.flatten(1).sum(1), n_inputs=1)
    x = _batch(5).degraded
    model.rows.clear()
    got = captum_attribute(method, fwd, x, steps=5, internal_batch_size=4, nt_samples=6, stdev=1e-6, seed=0)
    assert max(model.rows) <= 4, f"{method}: {sorted(set(model.rows))}"
    ref = captum_attribute(method, fwd, x, steps=5, internal_batch_size=None, nt_samples=6, stdev=1e-6, seed=0)
    torch.testing.assert_close(got.attributions[0], ref.attributions[0], rtol=1e-3, atol=1e-5)
    if got.delta is not None:  # a small difference of large sums: compare on the objective's scale
        scale = float(fwd(x).abs().max())
        torch.testing.assert_close(got.delta, ref.delta, rtol=1e-3, atol=1e-5 * max(1.0, scale))
    with pytest.raises(ConfigError, match="internal_batch_size"):
        captum_attribute(method, fwd, x, internal_batch_size=0)


def test_path_integrated_gradients_rows_bounded_with_and_without_crop():
    model = RowCounter(2).eval()
    fwd = ObjectiveForward(model, lambda out, x, ctx: out[:, :, 4:8, 4:8].flatten(1).sum(1), n_inputs=1)
    x = _batch(3).degraded
    for crop in (None, "auto"):
        model.rows.clear()
        path_integrated_gradients(fwd, x, steps=7, internal_batch_size=5, crop=crop)
        assert max(model.rows) <= 5
