"""Attribution engines for image-to-image networks: batched path-integrated gradients, captum methods,
the Diffusion Index and component (background vs rain) shares.

Everything attributes *one scalar per example*: :class:`ObjectiveForward` wraps a restoration model and an
objective (:mod:`probe.probes.objectives`) into such a function. Inputs are one tensor or a tuple of tensors
(component attribution: ``(B, L)`` with the model seeing ``B + L``)::

    import torch
    from torch import nn
    from probe.probes.objectives import Window, make_objective, make_context
    from probe.probes.attribution_methods import (ObjectiveForward, path_integrated_gradients,
                                                  attribution_map, diffusion_index)
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

captum methods (:func:`captum_attribute`): ``saliency``, ``input_x_gradient``, ``smoothgrad`` (NoiseTunnel
over Saliency, seeded) and ``captum_ig`` (captum's IntegratedGradients, for cross-checks and benchmarks).

Diffusion Index (:func:`diffusion_index`): DI = (1 − G) × 100 with the exact Gini of Gu & Dong's LAM code on
the map |Σ_c A| / max; returned with the map size because DI depends on it. Size-aware companions:
:func:`diffusion_index_corrected` (finite-n correction, G·n/(n−1): a delta map gives exactly ≈ 0 at any n)
and :func:`effective_pixels` ((Σa)²/Σa², the participation ratio — unchanged by padding a map with zeros, so
comparable across map sizes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.errors import ConfigError, DataError
from probe.registry import Registry

QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
               "finite_difference")
CAPTUM_METHODS = ("saliency", "input_x_gradient", "smoothgrad", "captum_ig")
PATHS = Registry("attribution path")


# ------------------------------------------------------------------------------------------ quadrature
def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α ∈ [0, 1] and weights of a rule with ``steps`` nodes (float64).

    For ``finite_difference`` the nodes are αᵢ = i/steps (i = 1..steps) and the "weights" are the previous
    nodes αᵢ₋₁ (the engine multiplies by γ(αᵢ) − γ(αᵢ₋₁) instead of wᵢ γ'(αᵢ)). Node/weight conventions match
    captum's ``approximation_parameters`` for the shared names.

    >>> a, w = quadrature("riemann_trapezoid", 3); a.tolist(), w.tolist()
    ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    steps = int(steps)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ConfigError("riemann_trapezoid needs steps >= 2")
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] = w[-1] = 0.5 / (steps - 1)
        return np.linspace(0.0, 1.0, steps), w
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / steps, steps), np.full(steps, 1.0 / steps)
    if method == "riemann_right":
        return np.linspace(1.0 / steps, 1.0, steps), np.full(steps, 1.0 / steps)
    if method == "riemann_middle":
        return np.linspace(0.5 / steps, 1.0 - 0.5 / steps, steps), np.full(steps, 1.0 / steps)
    if method == "finite_difference":
        nodes = np.arange(1, steps + 1, dtype=np.float64) / steps
        return nodes, nodes - 1.0 / steps
    raise ConfigError(f"unknown quadrature {method!r}; allowed: {', '.join(QUADRATURES)}")


# ------------------------------------------------------------------------------------------------ paths
class AttributionPath:
    """A path γ(α), α ∈ [0, 1], from a start point to the input, evaluated row-wise.

    ``point(x, baseline, alpha)`` and ``tangent(x, baseline, alpha)`` take ``x`` ``(M, ...)``, ``baseline``
    of the same shape (or None when the path defines its own start) and ``alpha`` ``(M,)``; both return
    ``(M, ...)``. Subclasses register with ``@PATHS.register("name")``.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    uses_baseline: ClassVar[bool] = True

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for path {self.name!r}; "
                              f"allowed: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params = {**self.defaults, **params}

    def point(self, x: Tensor, baseline: Tensor | None, alpha: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def tangent(self, x: Tensor, baseline: Tensor | None, alpha: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


def _expand_alpha(alpha: Tensor, like: Tensor) -> Tensor:
    return alpha.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


@PATHS.register("linear")
class LinearPath(AttributionPath):
    """Straight line γ(α) = b + α (x − b) (Integrated Gradients); baseline None means zeros."""

    def point(self, x, baseline, alpha):
        if baseline is None:
            return _expand_alpha(alpha, x) * x
        return baseline + _expand_alpha(alpha, x) * (x - baseline)

    def tangent(self, x, baseline, alpha):
        return x if baseline is None else x - baseline


def gaussian_kernel(size: int, sigma: float, epsilon: float = 1e-5) -> np.ndarray:
    """LAM's ``isotropic_gaussian_kernel``: exp(−r²/(2(σ+ε)²)) normalised to sum 1, ``size``×``size``."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    k = np.exp(-(xx ** 2 + yy ** 2) / (2.0 * (sigma + epsilon) ** 2))
    return k / k.sum()


def _gaussian_kernel_dsigma(size: int, sigma: float, epsilon: float = 1e-5) -> np.ndarray:
    """d/dσ of :func:`gaussian_kernel` (analytic)."""
    ax = np.arange(-size // 2 + 1.0, size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    r2 = xx ** 2 + yy ** 2
    s = sigma + epsilon
    g = np.exp(-r2 / (2.0 * s * s))
    dg = g * r2 / s ** 3
    total = g.sum()
    return dg / total - g * dg.sum() / total ** 2


def blur_rows(x: Tensor, kernels: Tensor) -> Tensor:
    """Blur row m of ``x`` ``(M, C, H, W)`` with its own kernel ``kernels[m]`` ``(k, k)``, reflect padding
    (OpenCV ``filter2D``'s default border, as in LAM)."""
    m, c, h, w = x.shape
    k = kernels.shape[-1]
    p = k // 2
    if p >= h or p >= w:
        raise DataError(f"blur kernel of size {k} is too large for {h}x{w} images")
    padded = F.pad(x.reshape(1, m * c, h, w), (p, p, p, p), mode="reflect")
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (M*C, 1, k, k)
    return F.conv2d(padded, weight, groups=m * c).reshape(m, c, h, w)


@PATHS.register("blur")
class BlurPath(AttributionPath):
    """LAM's progressive-blur path: γ(α) = K_σ(α) ⊛ x with σ(α) = σ_max (1 − α), kernel ``kernel_size``.

    γ(0) is x blurred at ``sigma`` (the start, no baseline), γ(1) = x (σ = 0, numerically a delta kernel).
    """

    defaults = {"sigma": 1.2, "kernel_size": 9}
    uses_baseline = False

    def __init__(self, **params: Any):
        super().__init__(**params)
        if float(self.params["sigma"]) <= 0:
            raise ConfigError(f"blur path: 'sigma' must be > 0, got {self.params['sigma']}")
        ks = int(self.params["kernel_size"])
        if ks < 3 or ks % 2 == 0:
            raise ConfigError(f"blur path: 'kernel_size' must be odd and >= 3, got {ks}")
        self._cache: dict[tuple[float, str], tuple[Tensor, Tensor]] = {}

    def _kernels(self, alpha: Tensor) -> tuple[Tensor, Tensor]:
        ks = int(self.params["kernel_size"])
        smax = float(self.params["sigma"])
        ks_list, dk_list = [], []
        for a in alpha.detach().cpu().double().tolist():
            key = (round(a, 15), str(alpha.device))
            if key not in self._cache:
                sigma = smax * (1.0 - a)
                k = torch.from_numpy(gaussian_kernel(ks, sigma)).float().to(alpha.device)
                dk = torch.from_numpy(-smax * _gaussian_kernel_dsigma(ks, sigma)).float().to(alpha.device)
                self._cache[key] = (k, dk)
            k, dk = self._cache[key]
            ks_list.append(k)
            dk_list.append(dk)
        return torch.stack(ks_list), torch.stack(dk_list)

    def point(self, x, baseline, alpha):
        return blur_rows(x, self._kernels(alpha)[0])

    def tangent(self, x, baseline, alpha):
        return blur_rows(x, self._kernels(alpha)[1])


def make_path(name: str, **params: Any) -> AttributionPath:
    """``make_path("blur", sigma=1.2, kernel_size=9)``."""
    return PATHS.get(name)(**params)


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
class CropPlan:
    """Per-example crop corners and one shared crop size used by the engine (``crop="auto"``)."""

    top: Tensor
    left: Tensor
    height: int
    width: int

    def describe(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "top": self.top.tolist(),
                "left": self.left.tolist()}


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


def _crop_rows(t: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    return torch.stack([t[i, ..., int(y):int(y) + h, int(x):int(x) + w]
                        for i, (y, x) in enumerate(zip(top.tolist(), left.tolist()))])


def _is_spatial(t: Any, hw: tuple[int, int]) -> bool:
    return isinstance(t, Tensor) and t.dim() >= 3 and tuple(t.shape[-2:]) == hw


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


def _plan_crop(forward, inputs, baselines, path, extra, chunk, margin, align, max_fraction,
               probe_alphas=(0.5, 1.0)) -> tuple[CropPlan | None, str, Tensor | None]:
    """Find and verify a crop holding every input pixel the objective depends on (see module doc).

    Returns the plan (None: integrate on the full image), the reason, and the full-image objective at
    α = 1 (a by-product of the probes, reused as ``f_end``)."""
    x0 = inputs[0]
    if any(t.dim() != 4 for t in inputs):
        return None, "inputs are not images", None
    n, _, h, w = x0.shape
    if any(tuple(t.shape[-2:]) != (h, w) for t in inputs):
        return None, "inputs differ in size", None
    support = torch.zeros(n, h, w, dtype=torch.bool, device=x0.device)
    probes = []
    for a in probe_alphas:
        alpha = torch.full((n,), float(a), dtype=torch.float64, device=x0.device)
        pts = tuple(path.point(x, b, alpha) for x, b in zip(inputs, baselines))
        f_full, full_g = _chunked_gradients(forward, pts, extra, chunk)
        for g in full_g:
            support |= (g != 0).any(1)
        probes.append((pts, f_full, full_g))
    f_one = probes[-1][1] if probe_alphas[-1] == 1.0 else None
    tops, lefts, hs, ws = [], [], [], []
    for i in range(n):
        rows = torch.nonzero(support[i].any(1)).flatten()
        cols = torch.nonzero(support[i].any(0)).flatten()
        if rows.numel() == 0:
            return None, "objective does not depend on the input", f_one
        y0 = max(0, int(rows[0]) - margin) // align * align
        x0_ = max(0, int(cols[0]) - margin) // align * align
        y1 = min(h, int(rows[-1]) + 1 + margin)
        x1 = min(w, int(cols[-1]) + 1 + margin)
        tops.append(y0)
        lefts.append(x0_)
        hs.append(y1 - y0)
        ws.append(x1 - x0_)
    ch = min(h, int(math.ceil(max(hs) / align) * align))
    cw = min(w, int(math.ceil(max(ws) / align) * align))
    if ch * cw > max_fraction * h * w:
        return None, f"dependency region {ch}x{cw} is most of the {h}x{w} image", f_one
    top = torch.tensor([min(t, h - ch) for t in tops])
    left = torch.tensor([min(t, w - cw) for t in lefts])
    plan = CropPlan(top, left, ch, cw)
    spatial = tuple(_is_spatial(e, (h, w)) for e in extra)
    for pts, f_full, g_full in probes:
        cpts = tuple(_crop_rows(p, top, left, ch, cw) for p in pts)
        cextra = tuple(_crop_rows(e, top, left, ch, cw) if s else e for e, s in zip(extra, spatial))
        f_crop, g_crop = _chunked_gradients(forward, cpts, cextra, chunk)
        for gf, gc, p in zip(g_full, g_crop, pts):
            ref = _crop_rows(gf, top, left, ch, cw)
            scale = gf.abs().flatten(1).amax(1).clamp_min(1e-30)
            err = (gc - ref).abs().flatten(1).amax(1)
            if bool((err > 1e-3 * scale).any()):
                return None, "cropped gradients differ from full-image gradients", f_one
            lin = (gf * p).abs().flatten(1).sum(1)
            if bool(((f_crop - f_full).abs() > 1e-3 * f_full.abs() + 1e-5 * lin + 1e-6).any()):
                return None, "cropped objective differs from the full-image objective", f_one
    return plan, "verified", f_one


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

    plan, reason, f_end = None, "off", None
    if crop not in (None, "none", "auto"):
        raise ConfigError(f"crop must be 'auto' or 'none', got {crop!r}")
    if crop == "auto":
        plan, reason, f_end = _plan_crop(forward, inputs_t, base_t, path_obj, extra, chunk, int(crop_margin),
                                  max(1, int(crop_align)), float(crop_max_fraction))
    hw = tuple(inputs_t[0].shape[-2:]) if inputs_t[0].dim() >= 3 else None
    spatial = tuple(hw is not None and _is_spatial(e, hw) for e in extra)

    alphas = torch.as_tensor(alphas_np, dtype=torch.float64, device=device)
    weights = torch.as_tensor(weights_np, dtype=torch.float64, device=device)
    acc = tuple(torch.zeros_like(x) for x in inputs_t)
    total = steps * n
    for start in range(0, total, chunk):
        rows = torch.arange(start, min(total, start + chunk), device=device)
        step_idx, ex_idx = rows // n, rows % n
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
            pts = [_crop_rows(p, top, left, plan.height, plan.width) for p in pts]
            incs = [_crop_rows(d, top, left, plan.height, plan.width) for d in incs]
            ex_extra = tuple(_crop_rows(e, top, left, plan.height, plan.width) if s else e
                             for e, s in zip(ex_extra, spatial))
        _, grads = _gradients(forward, tuple(pts), ex_extra)
        for a, g, d in zip(acc, grads, incs):
            contrib = g * d
            if plan is None:
                a.index_add_(0, ex_idx, contrib)
            else:
                for r, (i, y, x_) in enumerate(zip(ex_idx.tolist(), top.tolist(), left.tolist())):
                    a[i, ..., y:y + plan.height, x_:x_ + plan.width] += contrib[r]
    ones = torch.ones(n, dtype=torch.float64, device=device)
    if f_end is None:
        f_end = _evaluate(forward, tuple(path_obj.point(x, b, ones) for x, b in zip(inputs_t, base_t)), extra,
                          chunk)
    f_start = _evaluate(forward, tuple(path_obj.point(x, b, 0 * ones) for x, b in zip(inputs_t, base_t)),
                        extra, chunk)
    total_attr = sum(a.flatten(1).double().sum(1) for a in acc)
    delta = (total_attr - (f_end.double() - f_start.double())).to(f_end.dtype)
    info = {"method": "path_ig", "path": path_obj.describe(), "quadrature": method, "steps": int(steps),
            "internal_batch_size": chunk, "crop": plan.describe() if plan is not None else None,
            "crop_reason": reason}
    return PathAttribution(acc, f_end, f_start, delta, info)


# --------------------------------------------------------------------------------------------- captum
def captum_attribute(method: str, forward: nn.Module | Callable[..., Tensor],
                     inputs: Tensor | Sequence[Tensor], *, additional: Sequence[Any] = (),
                     baselines: Tensor | Sequence[Tensor] | None = None, steps: int = 50,
                     quadrature_method: str = "gausslegendre", internal_batch_size: int | None = None,
                     nt_samples: int = 16, stdev: float = 0.1, seed: int = 0) -> PathAttribution:
    """captum's Saliency / InputXGradient / NoiseTunnel(SmoothGrad) / IntegratedGradients on ``forward``.

    ``saliency`` and ``smoothgrad`` return signed gradients (maps take |Σ_c| later), so their "attributions"
    are gradients, not contributions (``info["kind"] == "gradient"``, no completeness). SmoothGrad draws its
    noise under ``seed`` without touching the global RNG state. ``captum_ig`` with ``internal_batch_size=None``
    is captum's default call. ``internal_batch_size`` bounds the rows of every forward/backward for every
    method: images go in groups of at most that many, SmoothGrad takes ``internal_batch_size // group``
    noise samples per pass and IG as many steps (its noise draws, not its expectation, depend on the value).

    >>> f = lambda x: (3.0 * x).flatten(1).sum(1)
    >>> captum_attribute("saliency", f, torch.ones(1, 1, 2, 2)).attributions[0].flatten().tolist()
    [3.0, 3.0, 3.0, 3.0]
    """
    from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency

    if method not in CAPTUM_METHODS:
        raise ConfigError(f"unknown captum method {method!r}; allowed: {', '.join(CAPTUM_METHODS)}")
    inputs_t = tuple(x.detach() for x in _as_tuple(inputs))
    n = int(inputs_t[0].shape[0])
    if internal_batch_size is not None and int(internal_batch_size) < 1:
        raise ConfigError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    # internal_batch_size bounds the rows of every forward: images are taken in groups of at most that many,
    # and SmoothGrad / IG split their samples / steps so that group × samples (steps) stays within it.
    group = n if internal_batch_size is None else max(1, min(n, int(internal_batch_size)))
    kind = "gradient" if method in ("saliency", "smoothgrad") else "attribution"
    parts: list[tuple[Tensor, ...]] = []
    deltas: list[Tensor] = []
    devices = [inputs_t[0].device] if inputs_t[0].device.type == "cuda" else []
    with torch.enable_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))  # SmoothGrad's noise, without touching the global RNG state
        for s in range(0, n, group):
            idx = torch.arange(s, min(n, s + group), device=inputs_t[0].device)
            xs = tuple(x[idx].requires_grad_(True) for x in inputs_t)
            extra = _index_extra(tuple(additional), idx) if additional else None
            rows = len(idx)
            if method == "saliency":
                attrs = Saliency(forward).attribute(xs, abs=False, additional_forward_args=extra)
            elif method == "input_x_gradient":
                attrs = InputXGradient(forward).attribute(xs, additional_forward_args=extra)
            elif method == "smoothgrad":
                per = None if internal_batch_size is None else max(1, int(internal_batch_size) // rows)
                attrs = NoiseTunnel(Saliency(forward)).attribute(
                    xs, nt_type="smoothgrad", nt_samples=int(nt_samples), stdevs=float(stdev),
                    nt_samples_batch_size=per, additional_forward_args=extra, abs=False)
            else:
                base = None if baselines is None else tuple(
                    torch.zeros_like(x) if b is None
                    else torch.as_tensor(b, dtype=x.dtype, device=x.device).expand_as(inputs_t[0])[idx]
                    for x, b in zip(xs, _as_tuple(baselines)))
                attrs, delta = IntegratedGradients(forward).attribute(
                    xs, baselines=base, additional_forward_args=extra, n_steps=int(steps),
                    method=quadrature_method, internal_batch_size=internal_batch_size,
                    return_convergence_delta=True)
                deltas.append(delta.detach())
            parts.append(tuple(a.detach() for a in _as_tuple(attrs)))
    attrs = tuple(torch.cat(p) for p in zip(*parts))
    delta = torch.cat(deltas) if deltas else None
    f_start = None
    attrs = tuple(a.detach() for a in _as_tuple(attrs))
    inputs_t = tuple(x.detach() for x in inputs_t)
    chunk = internal_batch_size or inputs_t[0].shape[0]
    f_end = _evaluate(forward, inputs_t, tuple(additional), chunk)
    if method == "captum_ig":
        starts = (tuple(torch.zeros_like(x) for x in inputs_t) if baselines is None
                  else tuple(torch.zeros_like(x) if b is None else b
                             for x, b in zip(inputs_t, _as_tuple(baselines))))
        f_start = _evaluate(forward, starts, tuple(additional), chunk)
        delta = delta.to(f_end.dtype).detach()
    info = {"method": method, "kind": kind, "steps": int(steps) if method == "captum_ig" else None,
            "quadrature": quadrature_method if method == "captum_ig" else None,
            "internal_batch_size": internal_batch_size,
            "nt_samples": int(nt_samples) if method == "smoothgrad" else None,
            "stdev": float(stdev) if method == "smoothgrad" else None}
    return PathAttribution(attrs, f_end, f_start, delta, info)


# ------------------------------------------------------------------------------------ maps and indices
def attribution_map(attr: Tensor | np.ndarray) -> np.ndarray:
    """LAM's map: |Σ_c A| (``grad_abs_norm`` before normalisation); ``(C,H,W)`` → ``(H,W)``,
    ``(N,C,H,W)`` → ``(N,H,W)``, float64 numpy."""
    a = attr.detach().cpu().double().numpy() if isinstance(attr, Tensor) else np.asarray(attr, np.float64)
    if a.ndim not in (3, 4):
        raise DataError(f"attribution_map expects (C,H,W) or (N,C,H,W), got shape {a.shape}")
    return np.abs(a.sum(axis=-3))


def gini(values: np.ndarray | Tensor, epsilon: float = 1e-7) -> float:
    """The exact Gini coefficient of LAM's code: flatten, shift negatives to 0, add ``epsilon``, sort,
    G = Σᵢ (2i − n − 1) x₍ᵢ₎ / (n Σ x) (i = 1..n), in float64.

    >>> round(gini(np.ones(100)), 6), round(gini(np.eye(10)[0]), 3)
    (0.0, 0.9)
    """
    x = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values)
    x = np.array(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise DataError("gini of an empty array")
    if x.min() < 0:
        x -= x.min()
    x += epsilon
    x = np.sort(x)
    n = x.size
    index = np.arange(1, n + 1)
    return float(np.sum((2 * index - n - 1) * x) / (n * np.sum(x)))


class DiffusionIndex(NamedTuple):
    """DI = (1 − Gini) × 100 of a map, with the number of pixels it was computed on."""

    value: float
    map_size: int


def _normalised(amap: np.ndarray | Tensor) -> np.ndarray | None:
    a = amap.detach().cpu().double().numpy() if isinstance(amap, Tensor) else np.asarray(amap, np.float64)
    a = np.abs(a)
    peak = a.max() if a.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return None
    return a / peak


def diffusion_index(amap: np.ndarray | Tensor) -> DiffusionIndex:
    """LAM's Diffusion Index of a 2-D map (abs, normalised by its max, exact :func:`gini`).

    An all-zero map has no attribution at all and gives NaN (LAM's code would report 100).

    >>> diffusion_index(np.ones((8, 8)))
    DiffusionIndex(value=100.0, map_size=64)
    """
    a = _normalised(amap)
    size = int(np.asarray(amap.shape).prod())
    if a is None:
        return DiffusionIndex(float("nan"), size)
    return DiffusionIndex((1.0 - gini(a)) * 100.0, size)


def diffusion_index_corrected(amap: np.ndarray | Tensor) -> float:
    """Finite-size corrected DI: (1 − G · n/(n−1)) × 100, so a one-pixel map gives ≈ 0 at any map size
    (plain DI gives 100/n). Uniform maps stay at 100. NaN for an all-zero map or n < 2."""
    a = _normalised(amap)
    if a is None or a.size < 2:
        return float("nan")
    n = a.size
    return (1.0 - gini(a) * n / (n - 1)) * 100.0


def effective_pixels(amap: np.ndarray | Tensor) -> float:
    """Participation ratio (Σa)² / Σa² of |map|: the number of pixels the attribution is spread over —
    1 for a delta, n for a uniform map, and unchanged when the map is padded with zeros (size-invariant)."""
    a = _normalised(amap)
    if a is None:
        return float("nan")
    return float(a.sum() ** 2 / np.sum(a * a))


def region_shares(amap: np.ndarray, mask: np.ndarray | Tensor) -> dict[str, np.ndarray]:
    """Share of map mass inside a binary mask, per image: ``share_in_mask``, ``mask_fraction`` and
    ``mask_enrichment`` = share / fraction (1 = no preference for rain pixels). ``amap`` (N,H,W), ``mask``
    (N,1,H,W) or (N,H,W)."""
    m = mask.detach().cpu().double().numpy() if isinstance(mask, Tensor) else np.asarray(mask, np.float64)
    if m.ndim == 4:
        m = m[:, 0]
    if m.shape != amap.shape:
        raise DataError(f"mask shape {m.shape} does not match the attribution map {amap.shape}")
    m = (m > 0.5).astype(np.float64)
    total = amap.reshape(len(amap), -1).sum(1)
    inside = (amap * m).reshape(len(amap), -1).sum(1)
    fraction = m.reshape(len(m), -1).mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
        enrichment = np.where(fraction > 0, share / np.where(fraction > 0, fraction, 1.0), np.nan)
    return {"share_in_mask": share, "mask_fraction": fraction, "mask_enrichment": enrichment}


def component_shares(attr_background: Tensor, attr_rain: Tensor) -> dict[str, np.ndarray]:
    """Per image: ``share_on_rain`` = Σ|Σ_c A_R| / (Σ|Σ_c A_B| + Σ|Σ_c A_R|) (attribution mass on the rain
    input), and the signed contributions ``rain_contribution`` = Σ A_R, ``background_contribution`` = Σ A_B
    (in objective units; they add up to f(x) − f(baseline) for complete methods)."""
    mb = attribution_map(attr_background).reshape(attr_background.shape[0], -1).sum(1)
    mr = attribution_map(attr_rain).reshape(attr_rain.shape[0], -1).sum(1)
    total = mb + mr
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mr / np.where(total > 0, total, 1.0), np.nan)
    return {"share_on_rain": share,
            "rain_contribution": attr_rain.detach().cpu().double().flatten(1).sum(1).numpy(),
            "background_contribution": attr_background.detach().cpu().double().flatten(1).sum(1).numpy()}


__all__ = ["CAPTUM_METHODS", "PATHS", "QUADRATURES", "AttributionPath", "BlurPath", "CropPlan", "DiffusionIndex",
           "LinearPath", "ObjectiveForward", "PathAttribution", "attribution_map", "blur_rows",
           "captum_attribute", "component_shares", "diffusion_index", "diffusion_index_corrected",
           "effective_pixels", "gaussian_kernel", "gini", "make_path", "path_integrated_gradients",
           "quadrature", "region_shares"]
