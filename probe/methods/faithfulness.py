"""Faithfulness of an attribution map for a dense-output network: deletion and insertion curves vs random orders.

The explanation-evaluation literature (pixel deletion / insertion, e.g. Samek et al. 2017 "Evaluating the
visualization of what a deep neural network has learned"; Petsiuk et al. 2018 RISE's deletion/insertion
metrics) asks of a map: perturbing pixels *in the map's order* must change the explained scalar faster
than perturbing them in random orders. For restoration networks the scalar is the attribution objective
(e.g. what the network removed inside a window, :mod:`probe.methods.objectives`), one per example.

For fractions ``q = (k / P)²``, k = 0 … P, of the pixels (``points`` = P; quadratic spacing, dense at the start,
because a windowed objective depends on a small part of the image), the top-``q`` pixels of an order are

- **deleted**: ``x_del = x · (1 − m) + x₀ · m`` (``x₀`` the perturbation baseline, e.g. the blurred input), and
- **inserted**: ``x_ins = x₀ · (1 − m) + x · m``,

and the objective is normalised to ``(F(·) − F(x₀)) / (F(x) − F(x₀))`` (1 at the input, 0 at the baseline).
AUC is the trapezoid area over ``q``. The map's **deletion gain** = AUC_del(random) − AUC_del(map) and
**insertion gain** = AUC_ins(map) − AUC_ins(random), random = mean over ``random_orders`` seeded random
orders; both > 0 for a map better than random, ≈ 0 for a map no better than random. Ties in the map are
broken at random (seeded), so a flat map scores like a random one. Where ``F(x) = F(x₀)`` the objective does
not respond to the perturbation and the scores are NaN.

    import torch
    from probe.methods.faithfulness import perturbation_curves
    f = lambda t, index: t[:, :, 4:8, 4:8].flatten(1).sum(1)   # index: the image of every row
    x = torch.rand(2, 3, 12, 12); good = torch.zeros(2, 12, 12); good[:, 4:8, 4:8] = 1
    res = perturbation_curves(f, x, torch.zeros_like(x), good, points=8, random_orders=2, seed=0)
    res.deletion_gain, res.insertion_gain        # (2,) each, > 0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.errors import ConfigError, DataError

__all__ = ["NOT_BETTER", "PARAMS", "FaithfulnessCurves", "check_params", "objective_curves", "perturbation_curves",
           "summarise_gain"]

#: the probe parameters of the faithfulness check (attribution, cem): on/off, curve points, random orders
PARAMS: dict[str, Any] = {"faithfulness": True, "faithfulness_points": 8, "faithfulness_random": 2}


def check_params(owner: str, params: dict[str, Any]) -> None:
    """Validate a probe's :data:`PARAMS` entries (ConfigError naming ``owner`` and the key)."""
    if not isinstance(params["faithfulness"], bool):
        raise ConfigError(f"{owner}: 'faithfulness' must be true or false, got {params['faithfulness']!r}")
    for key in ("faithfulness_points", "faithfulness_random"):
        value = params[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}: {key!r} must be an integer >= 1, got {value!r}")


NOT_BETTER = "no better than random (the 95% CI of the gain over random orders is not above 0)"


@dataclass
class FaithfulnessCurves:
    """``fractions`` (P+1,); ``curves`` (N, 4, P+1) normalised objective for ``CURVES`` =
    (deletion, insertion, deletion_random, insertion_random); ``deletion_gain`` / ``insertion_gain`` (N,)
    (NaN where the objective does not respond)."""

    fractions: np.ndarray
    curves: np.ndarray
    deletion_gain: np.ndarray
    insertion_gain: np.ndarray

    CURVES = ("deletion", "insertion", "deletion_random", "insertion_random")


def _orders(maps: Tensor, random_orders: int, seed: int) -> Tensor:
    """(N, 1 + R, H·W) pixel orders: the map's (descending, random tie-break) then R random ones."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1).double().cpu()
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    for i in range(n):
        perm = torch.randperm(flat.shape[1], generator=g)
        by_map = perm[torch.argsort(-flat[i, perm], stable=True)]
        rows.append(torch.stack([by_map] + [torch.randperm(flat.shape[1], generator=g)
                                            for _ in range(random_orders)]))
    return torch.stack(rows)


def perturbation_curves(objective: Callable[[Tensor, Tensor], Tensor], x: Tensor, baseline: Tensor, maps: Tensor, *,
                        points: int = 8, random_orders: int = 2, seed: int = 0,
                        batch_size: int = 64) -> FaithfulnessCurves:
    """Deletion / insertion curves of ``maps`` (N, H, W; larger = more important) for the scalar
    ``objective(inputs, index) -> (M,)`` (``index`` (M,): the image each of the M rows belongs to, for
    per-image context such as a window) at inputs ``x`` (N, C, H, W), perturbing towards ``baseline``.
    All perturbed inputs go through ``objective`` ``batch_size`` at a time (no gradients). See module doc."""
    if x.dim() != 4 or baseline.shape != x.shape or tuple(maps.shape) != (x.shape[0], *x.shape[-2:]):
        raise DataError(f"faithfulness: x {tuple(x.shape)}, baseline {tuple(baseline.shape)} and maps "
                        f"{tuple(maps.shape)} must be (N, C, H, W), (N, C, H, W), (N, H, W)")
    for name, value, low in (("points", points, 1), ("random_orders", random_orders, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"faithfulness: {name!r} must be an integer >= {low}, got {value!r}")
    n, c, h, w = x.shape
    hw = h * w
    fractions = np.linspace(0.0, 1.0, points + 1) ** 2  # dense at the start, where a map's top pixels act
    counts = [int(round(q * hw)) for q in fractions]
    orders = _orders(maps, random_orders, seed).to(x.device)  # (N, 1+R, HW)
    ranks = torch.empty_like(orders)
    ranks.scatter_(2, orders, torch.arange(hw).to(x.device).expand_as(orders))
    n_orders = orders.shape[1]
    jobs = [(i, o, k, kind) for i in range(n) for o in range(n_orders) for k in range(points + 1)
            for kind in (0, 1)]
    values = torch.empty(len(jobs), dtype=torch.float64)
    with torch.no_grad():
        both, ends_in = torch.arange(n).to(x.device).repeat(2), torch.cat([x, baseline])
        ends = torch.cat([objective(ends_in[s:s + batch_size], both[s:s + batch_size]).double().cpu()
                          for s in range(0, 2 * n, batch_size)])
        f_x, f_0 = ends[:n], ends[n:]
        for s in range(0, len(jobs), batch_size):
            part = jobs[s:s + batch_size]
            idx = torch.tensor([j[0] for j in part]).to(x.device)
            m = torch.stack([(ranks[i, o] < counts[k]).view(1, h, w) for i, o, k, _ in part]).to(x.dtype)
            kind = torch.tensor([j[3] for j in part], dtype=x.dtype).to(x.device).view(-1, 1, 1, 1)
            deleted = x[idx] * (1 - m) + baseline[idx] * m
            inserted = baseline[idx] * (1 - m) + x[idx] * m
            values[s:s + len(part)] = objective(deleted * (1 - kind) + inserted * kind, idx).double().cpu()
    values = values.view(n, n_orders, points + 1, 2)
    span = (f_x - f_0).view(n, 1, 1, 1)
    norm = torch.where(span.abs() > 1e-12 * (f_x.abs().view(n, 1, 1, 1) + 1e-30),
                       (values - f_0.view(n, 1, 1, 1)) / span, torch.full_like(values, float("nan")))
    norm = norm.numpy()
    curves = np.stack([norm[:, 0, :, 0], norm[:, 0, :, 1], norm[:, 1:, :, 0].mean(1), norm[:, 1:, :, 1].mean(1)],
                      axis=1)
    widths = np.diff(fractions)
    auc = ((curves[..., 1:] + curves[..., :-1]) / 2 * widths).sum(-1)  # trapezoid rule
    return FaithfulnessCurves(fractions, curves, auc[:, 2] - auc[:, 0], auc[:, 1] - auc[:, 3])


def summarise_gain(gains: np.ndarray, seed: int = 0) -> tuple[float, float, float, str | None]:
    """Mean gain over images with a 95% bootstrap CI (:func:`probe.stats.mean_ci`) and the flag
    :data:`NOT_BETTER` when the CI includes 0 (or, with one image, when the gain is ≤ 0). NaN gains are
    dropped; all NaN → (nan, nan, nan, reason)."""
    from probe.stats import mean_ci

    g = np.asarray(gains, dtype=np.float64)
    g = g[np.isfinite(g)]
    if g.size == 0:
        return float("nan"), float("nan"), float("nan"), "objective does not respond to the perturbation"
    est = mean_ci(g, seed=seed)
    low, high = float(est.ci_low), float(est.ci_high)
    if np.isfinite(low):
        flag = NOT_BETTER if low <= 0 <= high or high < 0 else None
    else:
        flag = NOT_BETTER if est.value <= 0 else None
    return float(est.value), low, high, flag


def objective_curves(model: Callable[[Tensor], Tensor], objective: Any, x: Tensor, context: dict[str, Tensor],
                     maps: Tensor, *, points: int = 8, random_orders: int = 2, seed: int = 0,
                     batch_size: int = 64, crop: dict[str, Any] | None = None) -> FaithfulnessCurves:
    """:func:`perturbation_curves` for an attribution objective (:mod:`probe.methods.objectives`) of
    ``model`` at inputs ``x`` (N, C, H, W) with its per-image ``context``, perturbing towards the blurred
    input (σ 1.2, kernel 9 — LAM's blur, so deleted pixels stay natural image content). ``crop``: an
    exact crop (:meth:`probe.methods.crops.CropPlan.describe` of a receptive-field plan) — the objective
    is evaluated on it, which gives the same values because nothing outside it can reach the objective."""
    from probe.methods.crops import crop_rows
    from probe.methods.paths import blur_rows, gaussian_kernel

    x = x.detach().float()
    kernel = torch.from_numpy(gaussian_kernel(9, 1.2)).float().to(x.device).expand(x.shape[0], -1, -1)
    tops = None if crop is None else torch.as_tensor(crop["top"])
    lefts = None if crop is None else torch.as_tensor(crop["left"])

    def scalar(inputs: Tensor, index: Tensor) -> Tensor:
        ctx = {k: v[index] for k, v in context.items()}
        if tops is not None:
            where = (tops[index.cpu()], lefts[index.cpu()], int(crop["height"]), int(crop["width"]))
            inputs = crop_rows(inputs, *where)
            ctx = {k: crop_rows(v, *where) for k, v in ctx.items()}
        return objective(model(inputs), inputs, ctx)

    return perturbation_curves(scalar, x, blur_rows(x, kernel), maps.to(x.device), points=points,
                               random_orders=random_orders, seed=seed, batch_size=batch_size)
