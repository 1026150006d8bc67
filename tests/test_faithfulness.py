"""Deletion / insertion faithfulness: a map of the true dependence beats random orders, a flat or inverted
map is flagged, and the attribution probe stores the scores with a CI and the flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probe.errors import ConfigError, DataError
from probe.methods.faithfulness import NOT_BETTER, perturbation_curves, summarise_gain


def _objective(t, index):  # depends on the 4x4 block at 4..8 only
    return t[:, :, 4:8, 4:8].flatten(1).sum(1)


def test_true_map_beats_random_and_flat_or_inverted_maps_do_not():
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(0)) + 0.5
    base = torch.zeros_like(x)
    good = torch.zeros(6, 12, 12)
    good[:, 4:8, 4:8] = 1
    res = perturbation_curves(_objective, x, base, good, points=8, random_orders=3, seed=0)
    assert res.curves.shape == (6, 4, 9)
    np.testing.assert_allclose(res.curves[:, 0, 0], 1.0)  # nothing deleted: the objective at the input
    np.testing.assert_allclose(res.curves[:, 1, -1], 1.0)  # everything inserted
    np.testing.assert_allclose(res.curves[:, 0, -1], 0.0, atol=1e-12)
    assert (res.deletion_gain > 0.3).all() and (res.insertion_gain > 0.3).all()
    mean, low, high, flag = summarise_gain(res.deletion_gain)
    assert flag is None and low > 0

    flat = perturbation_curves(_objective, x, base, torch.zeros(6, 12, 12), points=8, random_orders=3, seed=0)
    assert summarise_gain(flat.deletion_gain)[3] == NOT_BETTER
    inverted = perturbation_curves(_objective, x, base, 1 - good, points=8, random_orders=3, seed=0)
    assert (inverted.deletion_gain < 0).all() and summarise_gain(inverted.insertion_gain)[3] == NOT_BETTER


def test_unresponsive_objective_gives_nan_and_bad_shapes_raise():
    x = torch.rand(2, 3, 8, 8)
    res = perturbation_curves(lambda t, i: torch.zeros(t.shape[0]), x, x * 0, torch.rand(2, 8, 8), points=2)
    assert np.isnan(res.deletion_gain).all() and summarise_gain(res.deletion_gain)[3]
    with pytest.raises(DataError, match="maps"):
        perturbation_curves(_objective, x, x, torch.rand(2, 7, 8))
    with pytest.raises(ConfigError, match="points"):
        perturbation_curves(_objective, x, x, torch.rand(2, 8, 8), points=0)


def test_attribution_probe_stores_faithfulness_with_ci_for_ig():
    from probe.data.degradations import make_degradation
    from probe.probes import PROBES
    from probe.probes.base import EvalData

    clean = 0.25 + 0.5 * torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = make_degradation({"type": "rain", "preset": "small"}).apply(clean, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    res = PROBES.get("attribution")(n_images=3, steps=8, window=8, windows=["on"], faithfulness_points=6).run(
        model, EvalData({"ood": batch}))
    rows = {r["metric"]: r for r in res.metrics}
    assert res.arrays["faithfulness"].dims == ("split", "window", "image", "curve", "fraction")
    for key in ("deletion_gain", "insertion_gain"):
        assert np.isfinite(rows[key]["value"]) and rows[key]["ci_low"] <= rows[key]["value"] <= rows[key]["ci_high"]
    # IG of a local net concentrates on the window's neighbourhood: clearly better than random orders
    assert rows["deletion_gain"]["value"] > 0 and rows["insertion_gain"]["value"] > 0
    assert not rows["insertion_gain"].get("flag")


def test_curves_on_an_exact_crop_equal_the_full_image_ones():
    from probe.methods.faithfulness import objective_curves
    from probe.methods.integrated_gradients import ObjectiveForward, path_integrated_gradients
    from probe.methods.objectives import make_context, make_objective
    from probe.methods.windows import Window

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(2, 3, 40, 40)
    objective = make_objective("removed")
    ctx = make_context(objective, Window.square([10, 20], [12, 8], 8), (40, 40))
    res = path_integrated_gradients(ObjectiveForward(model, objective, context_keys=tuple(ctx)), x,
                                    additional=tuple(ctx.values()), steps=4, crop="auto")
    assert res.info["crop_kind"] == "receptive_field"
    maps = res.attributions[0].abs().sum(1)
    full = objective_curves(model, objective, x, ctx, maps, points=4)
    cropped = objective_curves(model, objective, x, ctx, maps, points=4, crop=res.info["crop"])
    np.testing.assert_allclose(cropped.curves, full.curves, rtol=1e-4, atol=1e-5)
