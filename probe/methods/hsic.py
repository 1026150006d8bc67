"""HSIC and the kernel statistics behind CKA: Gram matrices, the two estimators, the degeneracy guard.

The definitions, the sufficient-statistics scheme and the guards are documented once, in :mod:`probe.methods.cka`
(Kornblith et al. 2019; Nguyen et al. 2021). This module holds the pieces both the full-sample and the
minibatch estimates are built from:

* :func:`gram_linear` (K = X̄X̄ᵀ, centred, blockwise), :func:`gram_rbf` / :func:`rbf_from_linear`
  (K_ij = exp(−‖x_i − x_j‖² / (2σ²)), σ² = threshold² · median squared distance);
* :func:`hsic` — HSIC₀ = tr(K H L H) / (n − 1)² or HSIC₁ (unbiased) of two Gram matrices;
* :func:`cka_from_hsic` — CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)), defined as 0.0 and flagged when a
  self-HSIC is ≤ 1e-12 × its scale, NaN when non-finite;
* :class:`KernelStats` — n, diag(K), K1, ‖K‖²_F and the centred features or K of one representation.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from probe.errors import ConfigError

KERNELS = ("linear", "rbf")
ESTIMATORS = ("unbiased", "biased")
MIN_SAMPLES = 4
DEGENERATE_RTOL = 1e-12
CONSTANT_ULPS = 8.0  # centred energy <= (CONSTANT_ULPS * eps)^2 x raw energy: numerically constant


def constant_rtol(dtype: Any) -> float:
    """Relative energy below which a representation of ``dtype`` (torch or numpy) is numerically constant:
    ``(8 ε)²`` — 9.1e-13 for float32, 3.2e-30 for float64 (rounding of a constant is ~ε per entry)."""
    eps = torch.finfo(dtype).eps if isinstance(dtype, torch.dtype) else float(np.finfo(dtype).eps)
    return (CONSTANT_ULPS * eps) ** 2

__all__ = [
    "CKAMatrix",
    "CKAValue",
    "DEGENERATE_RTOL",
    "ESTIMATORS",
    "KERNELS",
    "KernelStats",
    "MIN_SAMPLES",
    "as_samples",
    "check_kernel_params",
    "constant_rtol",
    "cka_from_hsic",
    "gram_linear",
    "gram_rbf",
    "hsic",
    "rbf_from_linear",
]


class CKAValue(NamedTuple):
    """One CKA with its parts: ``value`` (0.0 when ``degenerate``, NaN when non-finite), the HSICs and n."""

    value: float
    hsic_xy: float
    hsic_xx: float
    hsic_yy: float
    degenerate: bool
    n: int


class CKAMatrix(NamedTuple):
    """CKA of every pair (or of each aligned pair when ``paired``): ``values`` and ``degenerate`` arrays."""

    values: np.ndarray
    degenerate: np.ndarray
    n_samples: int
    n_batches: int


# ----------------------------------------------------------------------------------------------- validation

def check_kernel_params(kernel: str, estimator: str, threshold: float = 1.0) -> None:
    """Raise :class:`ConfigError` for an unknown kernel/estimator or a non-positive RBF threshold."""
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if estimator not in ESTIMATORS:
        raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ConfigError(f"threshold must be a positive number, got {threshold!r}")


def _check_n(n: int) -> None:
    if n < MIN_SAMPLES:
        raise ConfigError(f"HSIC/CKA needs at least {MIN_SAMPLES} samples per batch, got n={n}")


def as_samples(x: Any) -> Tensor:
    """``(n, ...)`` tensor or array → ``(n, d)`` floating tensor (trailing dimensions flattened, no copy if
    possible). Half precision is promoted to float32."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if not isinstance(x, Tensor) else x.detach()
    if t.dim() == 0:
        raise ConfigError("features must have a sample dimension, got a scalar")
    t = t.reshape(t.shape[0], -1)
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.shape[1] == 0:
        raise ConfigError(f"features have no columns: shape {tuple(t.shape)}")
    return t


# ----------------------------------------------------------------------------------------------- products

def _native(t: Tensor) -> Any:
    """A numpy view of a CPU tensor (OpenBLAS, with syrk for ``a @ a.T``, and no torch thread pool spinning
    between BLAS calls), the tensor itself elsewhere (GPU)."""
    return t.numpy() if t.device.type == "cpu" else t


def _as_f64(a: Any) -> Any:
    return a.astype(np.float64) if isinstance(a, np.ndarray) else a.to(torch.float64)


def _centre(x: Any) -> Any:
    """Column means in x's dtype (a BLAS matrix–vector product). Any shift is exact for HSIC (translation
    invariance); the mean only has to be close, so that centred products keep their precision."""
    if isinstance(x, np.ndarray):
        return (np.ones(x.shape[0], dtype=x.dtype) @ x) / x.dtype.type(x.shape[0])
    return x.mean(0)


def _nearly_constant(centred_trace: float, n: int, mu: Any) -> bool:
    """Centred energy ≤ constant_rtol(dtype) × raw energy, the raw energy being Σ‖xᵢ − μ‖² + n‖μ‖² (exact for the
    exact mean; no second pass over the data)."""
    mu_energy = float((mu.astype(np.float64) ** 2).sum()) if isinstance(mu, np.ndarray) else float(
        mu.double().square().sum())
    return centred_trace <= constant_rtol(mu.dtype) * (centred_trace + n * mu_energy)


def _gram_block(x: Any, mu: Any, rows_a: slice, rows_b: slice, chunk: int) -> Any:
    """``(X_a − μ)(X_b − μ)ᵀ`` in float64, products in x's dtype over column chunks of ``chunk``."""
    d = x.shape[1]
    out = None
    for c in range(0, d, chunk):
        cols = slice(c, min(d, c + chunk))
        a = x[rows_a, cols] - mu[cols]
        b = a if rows_a == rows_b else x[rows_b, cols] - mu[cols]
        part = a @ b.T
        if out is None:
            out = _as_f64(part)
        else:
            out += part
    assert out is not None
    return out


def gram_linear(x: Any, *, center: bool = True, chunk: int = 8192) -> Tensor:
    """Linear Gram matrix ``(n, n)`` float64 of ``x`` ``(n, ...)``; with ``center`` the features are centred
    first (HSIC and CKA do not change). Products in x's precision over column chunks, summed in float64::

        G = gram_linear(torch.randn(8, 3, 16, 16))     # (8, 8)
    """
    t = _native(as_samples(x))
    mu = _centre(t) if center else t[0] * 0
    rows = slice(0, t.shape[0])
    g = _gram_block(t, mu, rows, rows, chunk)
    if center and _nearly_constant(float(g.diagonal().sum()), t.shape[0], mu):
        g = g * 0.0
    return torch.from_numpy(g) if isinstance(g, np.ndarray) else g


def rbf_from_linear(gram: Tensor, threshold: float = 1.0) -> Tensor:
    """RBF Gram from a linear Gram (squared distances ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩; bandwidth in the module
    docstring)."""
    g = gram.to(torch.float64)
    diag = torch.diagonal(g)
    sq = (diag[:, None] + diag[None, :] - 2.0 * g).clamp_(min=0.0)
    sq.fill_diagonal_(0.0)
    med = float(np.median(sq.cpu().numpy()))
    if not med > 0:
        positive = sq[sq > 0]
        med = float(positive.mean()) if positive.numel() else 1.0
    return torch.exp(-sq / (2.0 * threshold**2 * med))


def gram_rbf(x: Any, threshold: float = 1.0) -> Tensor:
    """RBF Gram matrix ``(n, n)`` float64 of ``x`` (bandwidth: ``threshold`` × median distance)::

        K = gram_rbf(torch.randn(10, 5), threshold=0.5)
    """
    return rbf_from_linear(gram_linear(x), threshold)


# ----------------------------------------------------------------------------------------------- HSIC core

def _hsic_from_stats(n: int, kl: float, row_k: Tensor, row_l: Tensor, diag_k: Tensor, diag_l: Tensor,
                     estimator: str) -> float:
    """HSIC from Σ K∘L, row sums and diagonals of K and L (all float64)."""
    if estimator == "unbiased":
        trace = kl - float(diag_k @ diag_l)
        sum_k = float(row_k.sum() - diag_k.sum())
        sum_l = float(row_l.sum() - diag_l.sum())
        cross = float((row_k - diag_k) @ (row_l - diag_l))
        return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))
    total = kl - 2.0 / n * float(row_k @ row_l) + float(row_k.sum()) * float(row_l.sum()) / n**2
    return total / (n - 1) ** 2


def _scale(n: int, kk: float, estimator: str) -> float:
    return kk / (n * (n - 3)) if estimator == "unbiased" else kk / (n - 1) ** 2


def cka_from_hsic(hsic_xy: float, hsic_xx: float, hsic_yy: float, *, scale_xx: float | None = None,
                  scale_yy: float | None = None) -> tuple[float, bool]:
    """CKA from three HSICs → ``(value, degenerate)``; 0.0 and ``True`` when a self-HSIC is ≤ 1e-12 × its scale
    (or ≤ 0 without scales); NaN and ``True`` when anything is non-finite (broken features)::

        cka_from_hsic(0.5, -1e-18, 2.0)    # (0.0, True)
        cka_from_hsic(0.5, float("nan"), 2.0)    # (nan, True)
    """
    values = (hsic_xy, hsic_xx, hsic_yy, *(v for v in (scale_xx, scale_yy) if v is not None))
    if not all(math.isfinite(v) for v in values):
        return float("nan"), True
    tol_x = DEGENERATE_RTOL * abs(scale_xx) if scale_xx is not None else 0.0
    tol_y = DEGENERATE_RTOL * abs(scale_yy) if scale_yy is not None else 0.0
    if not (hsic_xx > tol_x and hsic_yy > tol_y):
        return 0.0, True
    value = hsic_xy / math.sqrt(hsic_xx * hsic_yy)
    return float(min(1.0, max(-1.0, value))), False


class KernelStats:
    """Sufficient statistics of one representation's kernel matrix K: n, diag(K), K1, ‖K‖²_F, and either the
    centred features (linear kernel in feature space) or K itself, for cross terms Σ K∘L."""

    __slots__ = ("diag", "gram", "kk", "n", "row", "x")

    def __init__(self, n: int, diag: Tensor, row: Tensor, kk: float, x: Tensor | None, gram: Tensor | None):
        self.n, self.diag, self.row, self.kk, self.x, self.gram = n, diag, row, kk, x, gram

    @classmethod
    def from_features(cls, x: Any, kernel: str = "linear", threshold: float = 1.0) -> KernelStats:
        t = as_samples(x)
        n, d = t.shape
        _check_n(n)
        if kernel == "linear" and d <= max(n, 64) and d <= 4096:
            raw = t.to(torch.float64)
            xc = raw - raw.mean(0)
            if float(xc.square().sum()) <= constant_rtol(t.dtype) * float(raw.square().sum()):
                xc = xc * 0.0
            gram_xx = xc.T @ xc
            row = xc @ xc.sum(0)
            return cls(n, (xc * xc).sum(1), row, float((gram_xx * gram_xx).sum()), xc, None)
        g = gram_linear(t)
        return cls.from_linear_gram(g, kernel, threshold)

    @classmethod
    def from_linear_gram(cls, gram: Tensor, kernel: str = "linear", threshold: float = 1.0) -> KernelStats:
        g = gram.to(torch.float64)
        if g.dim() != 2 or g.shape[0] != g.shape[1]:
            raise ConfigError(f"a Gram matrix must be square, got shape {tuple(g.shape)}")
        _check_n(g.shape[0])
        k = rbf_from_linear(g, threshold) if kernel == "rbf" else g
        return cls(k.shape[0], torch.diagonal(k).clone(), k.sum(1), float((k * k).sum()), None, k)

    def cross(self, other: KernelStats) -> float:
        """Σ_ij K_ij L_ij."""
        if self.n != other.n:
            raise ConfigError(f"CKA needs the same samples on both sides, got n={self.n} and n={other.n}")
        if self.x is not None and other.x is not None:
            return float((self.x.T @ other.x).square().sum())
        if self.gram is not None and other.gram is not None:
            return float((self.gram * other.gram).sum())
        feat, gram = (self, other) if self.x is not None else (other, self)
        assert feat.x is not None and gram.gram is not None
        return float(((gram.gram @ feat.x) * feat.x).sum())

    def hsic_with(self, other: KernelStats, estimator: str, kl: float | None = None) -> float:
        kl = self.cross(other) if kl is None else kl
        return _hsic_from_stats(self.n, kl, self.row, other.row, self.diag, other.diag, estimator)

    def self_hsic(self, estimator: str) -> float:
        return _hsic_from_stats(self.n, self.kk, self.row, self.row, self.diag, self.diag, estimator)

    def scale(self, estimator: str) -> float:
        return _scale(self.n, self.kk, estimator)


def hsic(k: Any, l: Any, estimator: str = "unbiased") -> float:
    """HSIC of two ``(n, n)`` kernel (Gram) matrices with the biased or unbiased (HSIC₁) estimator::

        hsic(gram_linear(x), gram_linear(y), "unbiased")
    """
    check_kernel_params("linear", estimator)
    kt = torch.as_tensor(k).to(torch.float64)
    lt = torch.as_tensor(l).to(torch.float64)
    if kt.shape != lt.shape or kt.dim() != 2 or kt.shape[0] != kt.shape[1]:
        raise ConfigError(f"HSIC needs two square matrices of one size, got {tuple(kt.shape)} and {tuple(lt.shape)}")
    a, b = KernelStats.from_linear_gram(kt), KernelStats.from_linear_gram(lt)
    return a.hsic_with(b, estimator)
