"""Batched path-integrated gradients for image-to-image networks: the engine every attribution probe uses.

Everything attributes *one scalar per example*: :class:`ObjectiveForward` wraps a restoration model and an
objective (:mod:`probe.methods.objectives`) into such a function. Inputs are one tensor or a tuple of tensors
(component attribution: ``(B, L)`` with the model seeing ``B + L``)::

    import torch
    from torch import nn
    from probe.methods.objectives import make_objective, make_context
    from probe.methods.windows import Window
    from probe.methods.integrated_gradients import ObjectiveForward, path_integrated_gradients
    from probe.methods.attribution_maps import attribution_map, diffusion_index
    model = nn.Conv2d(3, 3, 3, padding=1)
    objective = make_objective("window_sum")
    x = torch.rand(2, 3, 32, 32)
    ctx = make_context(objective, Window.square(8, 8, 8, n=2), (32, 32))
    fwd = ObjectiveForward(model, objective, context_keys=tuple(ctx))
    res = path_integrated_gradients(fwd, x, additional=tuple(ctx.values()), steps=16,
                                    internal_batch_size=8)
    res.attributions[0].shape, res.delta.abs().max()        # (2, 3, 32, 32), ~1e-6
    diffusion_index(attribution_map(res.attributions[0][0]))  # DiffusionIndex(value=..., map_size=1024)

Path-integrated gradients (:func:`path_integrated_gradients`)
    A = Σᵢ ∇F(γ(αᵢ)) ⊙ Dᵢ along a path γ from a start (α = 0) to the input (α = 1): ``linear`` from a baseline
    (Integrated Gradients) or LAM's progressive ``blur`` (σ from σ_max to 0). Dᵢ = wᵢ γ'(αᵢ) for a quadrature
    (``gausslegendre``, ``riemann_trapezoid|left|right|middle``; the tangent γ' is analytic) or
    Dᵢ = γ(αᵢ) − γ(αᵢ₋₁) for ``finite_difference`` (LAM's own scheme). The (example × step) rows are processed
    ``internal_batch_size`` at a time and the products accumulated, so memory is bounded by one chunk. With
    ``crop="auto"`` the engine finds the input region the objective depends on (support of full-image
    gradients at two path points, plus a margin, aligned), verifies on those points that the crop reproduces
    the full-image objective and gradients, and then integrates on the crop only (exact for networks of local
    operations; otherwise the check fails and the full image is used). The completeness gap
    ``delta = Σ A − (F(γ(1)) − F(γ(0)))`` is always measured on full images.

Paths and quadratures: :mod:`probe.methods.paths`; captum methods: :mod:`probe.methods.captum_methods`; the
Diffusion Index and component shares: :mod:`probe.methods.attribution_maps`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from probe.errors import ConfigError, DataError
from probe.methods.crops import (
    CropPlan,
    crop_from_boxes,
    crop_rows,
    is_spatial,
    plan_receptive_field,
    region_boxes,
    support_grow,
)
from probe.methods.paths import AttributionPath, _expand_alpha, make_path, quadrature
from probe.methods.threads import contention_aware_threads

__all__ = ["CropPlan", "ObjectiveForward", "PathAttribution", "path_integrated_gradients"]


# --------------------------------------------------------------------------------------- forward wrap
class ObjectiveForward(nn.Module):
    """``model`` + ``objective`` → one scalar per example, in captum's calling convention.

    ``forward(*inputs, *context)``: the first ``n_inputs`` tensors are summed into the model input (component
    attribution: ``(B, L)`` → ``model(B + L)``); the rest are the context tensors named by ``context_keys``.
    """

    def __init__(self, model: nn.Module, objective: Callable[..., Tensor], n_inputs: int = 1,
                 context_keys: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.objective = objective
        self.n_inputs = int(n_inputs)
        self.context_keys = tuple(context_keys)

    def forward(self, *args: Tensor) -> Tensor:
        if len(args) != self.n_inputs + len(self.context_keys):
            raise ConfigError(f"ObjectiveForward expected {self.n_inputs} inputs + context "
                              f"{list(self.context_keys)}, got {len(args)} tensors")
        inputs = args[:self.n_inputs]
        x = inputs[0]
        for extra in inputs[1:]:
            x = x + extra
        ctx = dict(zip(self.context_keys, args[self.n_inputs:]))
        return self.objective(self.model(x), x, ctx)


# ------------------------------------------------------------------------------------------ the engine
@dataclass
class PathAttribution:
    """Result of :func:`path_integrated_gradients` (or :func:`attribute`).

    ``attributions``: one tensor per input (same shapes); ``f_end`` / ``f_start``: the objective at γ(1)
    (the input) and γ(0) (baseline / most blurred), ``(N,)``; ``delta``: Σ attributions − (f_end − f_start)
    (the completeness / convergence gap, None for gradient-only methods); ``info``: JSON-able description.
    """

    attributions: tuple[Tensor, ...]
    f_end: Tensor
    f_start: Tensor | None = None
    delta: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_delta(self) -> Tensor | None:
        """|delta| / |f_end − f_start| (NaN where the objective did not change along the path)."""
        if self.delta is None or self.f_start is None:
            return None
        change = (self.f_end - self.f_start).abs()
        return torch.where(change > 0, self.delta.abs() / change.clamp_min(1e-30),
                           torch.full_like(change, float("nan")))


def _as_tuple(value: Tensor | Sequence[Tensor] | None) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, Tensor):
        return (value,)
    return tuple(value)


def _gradients(forward: Callable[..., Tensor], points: tuple[Tensor, ...], extra: tuple[Any, ...]
               ) -> tuple[Tensor, tuple[Tensor, ...]]:
    pts = tuple(p.detach().requires_grad_(True) for p in points)
    with torch.enable_grad():
        out = forward(*pts, *extra)
        if out.dim() != 1 or out.shape[0] != pts[0].shape[0]:
            raise ConfigError(f"attribution forward must return one scalar per example, shape "
                              f"({pts[0].shape[0]},), got {tuple(out.shape)}")
        grads = torch.autograd.grad(out.sum(), pts, allow_unused=True)
    grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(pts, grads))
    return out.detach(), grads


def _evaluate(forward: Callable[..., Tensor], points: tuple[Tensor, ...], extra: tuple[Any, ...],
              chunk: int) -> Tensor:
    outs = []
    n = points[0].shape[0]
    with torch.no_grad():
        for s in range(0, n, chunk):
            idx = slice(s, s + chunk)
            outs.append(forward(*(p[idx] for p in points),
                                *(e[idx] if isinstance(e, Tensor) and e.dim() > 0 else e for e in extra)))
    return torch.cat(outs).detach()


def _index_extra(extra: tuple[Any, ...], idx: Tensor) -> tuple[Any, ...]:
    return tuple(e[idx] if isinstance(e, Tensor) and e.dim() > 0 else e for e in extra)


def _chunked_gradients(forward: Callable[..., Tensor], points: tuple[Tensor, ...], extra: tuple[Any, ...],
                       chunk: int) -> tuple[Tensor, tuple[Tensor, ...]]:
    """:func:`_gradients` over all rows, ``chunk`` rows at a time."""
    n = points[0].shape[0]
    outs, grads = [], [[] for _ in points]
    for s in range(0, n, chunk):
        idx = torch.arange(s, min(n, s + chunk), device=points[0].device)
        o, g = _gradients(forward, tuple(p[idx] for p in points), _index_extra(extra, idx))
        outs.append(o)
        for j, gj in enumerate(g):
            grads[j].append(gj)
    return torch.cat(outs), tuple(torch.cat(g) for g in grads)


def _integrate(forward, inputs_t, base_t, extra, path_obj, alphas, weights, method, chunk, plan, examples,
               spatial) -> tuple[Tensor, ...]:
    """Σ over path steps of ∇F ⊙ D for the examples ``examples`` (on ``plan``'s crops, or full images),
    ``chunk`` (example × step) rows per forward/backward; returns full-size attributions of those examples."""
    device = inputs_t[0].device
    m = int(examples.numel())
    acc = tuple(torch.zeros((m, *x.shape[1:]), dtype=x.dtype, device=device) for x in inputs_t)
    steps = int(alphas.shape[0])
    total = steps * m
    for start in range(0, total, chunk):
        rows = torch.arange(start, min(total, start + chunk), device=device)
        step_idx, local = rows // m, rows % m
        ex_idx = examples.to(device)[local]
        alpha = alphas[step_idx]
        pts, incs = [], []
        for x, b in zip(inputs_t, base_t):
            xr, br = x[ex_idx], (None if b is None else b[ex_idx])
            p = path_obj.point(xr, br, alpha)
            if method == "finite_difference":
                d = p - path_obj.point(xr, br, weights[step_idx])
            else:
                d = path_obj.tangent(xr, br, alpha) * _expand_alpha(weights[step_idx], xr)
            pts.append(p)
            incs.append(d)
        ex_extra = _index_extra(extra, ex_idx)
        if plan is not None:
            top, left = plan.top[ex_idx.cpu()], plan.left[ex_idx.cpu()]
            pts = [crop_rows(p, top, left, plan.height, plan.width) for p in pts]
            incs = [crop_rows(d, top, left, plan.height, plan.width) for d in incs]
            ex_extra = tuple(crop_rows(e, top, left, plan.height, plan.width) if s else e
                             for e, s in zip(ex_extra, spatial))
        _, grads = _gradients(forward, tuple(pts), ex_extra)
        for a, g, d in zip(acc, grads, incs):
            contrib = g * d
            if plan is None:
                a.index_add_(0, local, contrib)
            else:
                for r, (i, y, x_) in enumerate(zip(local.tolist(), top.tolist(), left.tolist())):
                    a[i, ..., y:y + plan.height, x_:x_ + plan.width] += contrib[r]
    return acc


def _exact_test_crop(run, forward, extra, hw, n, margin, align, max_fraction, why_no_bound):
    """No structural bound: integrate the first example on the full image *and* on the crop its own
    attribution support suggests; use that crop geometry for the other examples only if the two agree
    (max |difference| ≤ 1e-5 of the largest attribution). Returns (attributions, plan, kind, reason)."""
    first = run(None, torch.arange(1))
    if n < 2:
        return first, None, "full", f"{why_no_bound}; one image: an exact test would not save time"
    boxes = region_boxes(forward, extra, hw)
    grow = None if boxes is None else support_grow(first, boxes[0], margin)
    plan = None if grow is None else crop_from_boxes(boxes, grow, hw, align, max_fraction)[0]
    if plan is not None:
        test = run(CropPlan(plan.top[:1], plan.left[:1], plan.height, plan.width), torch.arange(1))
        scale = max(float(a.abs().max()) for a in first)
        err = max(float((a - b).abs().max()) for a, b in zip(first, test))
        if err <= 1e-5 * max(scale, 1e-30):
            rest = run(plan, torch.arange(1, n))
            acc = tuple(torch.cat([a, b]) for a, b in zip(first, rest))
            return acc, plan, "exact_test", (f"{why_no_bound}; crop {plan.height}x{plan.width} reproduced the "
                                            f"first image's full-image attribution (max diff {err:.1e})")
        reason = f"{why_no_bound}; the crop changed the first image's attribution (max diff {err:.1e}): full images"
    else:
        reason = f"{why_no_bound}; the first image depends on most of the image: full images"
    rest = run(None, torch.arange(1, n))
    return tuple(torch.cat([a, b]) for a, b in zip(first, rest)), None, "full", reason


def path_integrated_gradients(
    forward: Callable[..., Tensor],
    inputs: Tensor | Sequence[Tensor],
    baselines: Tensor | Sequence[Tensor | None] | None = None,
    *,
    path: str | AttributionPath = "linear",
    path_params: dict[str, Any] | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = 16,
    additional: Sequence[Any] = (),
    crop: str | None = None,
    crop_margin: int = 4,
    crop_align: int = 8,
    crop_max_fraction: float = 0.6,
) -> PathAttribution:
    """Batched path-integrated gradients of ``forward(*inputs, *additional) -> (N,)``.

    ``inputs``: a tensor or tuple of tensors with the same batch size N; ``baselines`` matches (None or a
    None entry = zeros; ignored by paths that define their own start, e.g. ``blur``). ``additional``: extra
    per-example tensors (first dim N) passed through, indexed (and cropped) like the inputs — captum's
    ``additional_forward_args``. ``internal_batch_size``: (example × step) rows per forward/backward (None =
    all ``steps × N`` rows at once, as captum's default). ``crop="auto"``: integrate on the verified
    dependency region only (module doc). Returns :class:`PathAttribution`.

    >>> lin = lambda x: (x * 2.0).flatten(1).sum(1)
    >>> x = torch.ones(1, 1, 2, 2)
    >>> path_integrated_gradients(lin, x, steps=4).attributions[0].flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    inputs_t = _as_tuple(inputs)
    if not inputs_t:
        raise ConfigError("path_integrated_gradients needs at least one input")
    n = int(inputs_t[0].shape[0])
    if any(int(t.shape[0]) != n for t in inputs_t):
        raise DataError("all inputs must have the same batch size")
    path_obj = path if isinstance(path, AttributionPath) else make_path(path, **(path_params or {}))
    base_t = _as_tuple(baselines) if baselines is not None else (None,) * len(inputs_t)
    if len(base_t) != len(inputs_t):
        raise ConfigError(f"got {len(base_t)} baselines for {len(inputs_t)} inputs")
    if not path_obj.uses_baseline:
        base_t = (None,) * len(inputs_t)
    base_t = tuple(None if b is None else torch.as_tensor(b, dtype=x.dtype, device=x.device).expand_as(x)
                   for x, b in zip(inputs_t, base_t))
    inputs_t = tuple(x.detach() for x in inputs_t)
    extra = tuple(additional)
    for e in extra:
        if isinstance(e, Tensor) and e.dim() > 0 and e.shape[0] != n:
            raise DataError(f"additional tensor of batch size {e.shape[0]} does not match the inputs ({n})")
    chunk = int(internal_batch_size) if internal_batch_size is not None else steps * n
    if chunk < 1:
        raise ConfigError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    alphas_np, weights_np = quadrature(method, steps)
    device = inputs_t[0].device

    hw = (int(inputs_t[0].shape[-2]), int(inputs_t[0].shape[-1])) if inputs_t[0].dim() >= 3 else None
    spatial = tuple(hw is not None and is_spatial(e, hw) for e in extra)
    alphas = torch.as_tensor(alphas_np, dtype=torch.float64, device=device)
    weights = torch.as_tensor(weights_np, dtype=torch.float64, device=device)
    if crop not in (None, "none", "auto"):
        raise ConfigError(f"crop must be 'auto' or 'none', got {crop!r}")
    run = functools.partial(_integrate, forward, inputs_t, base_t, extra, path_obj, alphas, weights, method,
                            chunk, spatial=spatial)
    everyone = torch.arange(n)
    plan, reason, kind, crop_info = None, "off", "full", {}
    with contention_aware_threads(device) as threads:
        if crop == "auto" and any(t.dim() != 4 for t in inputs_t):
            reason = "inputs are not images"
        elif crop == "auto":
            plan, reason, crop_info = plan_receptive_field(forward, inputs_t, extra, max(1, int(crop_align)),
                                                            float(crop_max_fraction))
            kind = "receptive_field" if plan is not None else "full"
        if plan is not None or crop != "auto" or hw is None or reason in ("inputs are not images",) \
                or "looks at no window" in reason or "most of" in reason:
            acc = run(plan, everyone)
        else:
            acc, plan, kind, reason = _exact_test_crop(run, forward, extra, hw, n, int(crop_margin),
                                                       max(1, int(crop_align)), float(crop_max_fraction),
                                                       reason)
        ones = torch.ones(n, dtype=torch.float64, device=device)
        f_end = _evaluate(forward, tuple(path_obj.point(x, b, ones) for x, b in zip(inputs_t, base_t)), extra,
                          chunk)
        f_start = _evaluate(forward, tuple(path_obj.point(x, b, 0 * ones) for x, b in zip(inputs_t, base_t)),
                            extra, chunk)
    total_attr = sum(a.flatten(1).double().sum(1) for a in acc)
    delta = (total_attr - (f_end.double() - f_start.double())).to(f_end.dtype)
    info = {"method": "path_ig", "path": path_obj.describe(), "quadrature": method, "steps": int(steps),
            "internal_batch_size": chunk, "crop": plan.describe() if plan is not None else None,
            "crop_reason": reason, "crop_kind": kind, **crop_info, "threads": threads}
    return PathAttribution(acc, f_end, f_start, delta, info)
