"""Attribution paths and quadratures for :func:`probe.methods.integrated_gradients.path_integrated_gradients`.

A path γ(α), α ∈ [0, 1], runs from a start (α = 0) to the input (α = 1): ``linear`` from a baseline (Integrated
Gradients, Sundararajan et al. 2017: γ(α) = b + α (x − b), γ' = x − b) or LAM's progressive ``blur`` (Gu & Dong
2021: the input blurred with a Gaussian whose σ goes from σ_max at α = 0 to 0 at α = 1). Paths register in
:data:`PATHS` (one class + ``@PATHS.register("name")``).

A quadrature (:func:`quadrature`) gives the nodes αᵢ and weights wᵢ of Σᵢ wᵢ g(αᵢ) ≈ ∫₀¹ g(α) dα:
``gausslegendre``, ``riemann_trapezoid|left|right|middle``, or ``finite_difference`` (LAM's own scheme, where the
engine uses Dᵢ = γ(αᵢ) − γ(αᵢ₋₁) instead of wᵢ γ'(αᵢ)).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from probe.errors import ConfigError, DataError
from probe.registry import Registry

QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
               "finite_difference")
PATHS = Registry("attribution path")

__all__ = ["PATHS", "QUADRATURES", "AttributionPath", "BlurPath", "LinearPath", "blur_rows", "gaussian_kernel",
           "make_path", "quadrature"]


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
