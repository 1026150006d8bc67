"""Centered kernel alignment (CKA) and HSIC: exact, float64-accumulated, memory-bounded.

Definitions (Kornblith et al. 2019; Nguyen et al. 2021; ``shared/SCIENCE.md``), for Gram matrices K, L of n
samples, K̃ = K with its diagonal zeroed, H = I − 11ᵀ/n:

* biased    HSIC₀ = tr(K H L H) / (n − 1)²
* unbiased  HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))
* CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))
* kernels: linear K = XXᵀ; RBF K_ij = exp(−‖x_i − x_j‖² / (2σ²)) with σ² = threshold² · median of the n²
  squared distances (diagonal included, as in Kornblith et al.'s code; σ = threshold × "median distance").
  If that median is 0 the mean of the positive squared distances is used (1 if there are none).

Every HSIC is evaluated from a handful of sufficient statistics — Σ K∘L, the row sums and the diagonals of K
and L — accumulated in float64. How they are obtained is the efficiency story:

* linear kernel, few features (d ≲ n): feature space, Σ K∘L = ‖XᵀY‖²_F, rows = X(Xᵀ1) — no n×n matrix;
* linear kernel, many features (d > n, the "image" convention): the Gram matrices are built block by block
  (``block_size`` rows × ``chunk`` columns, products in float32 for float32 input, summed in float64) and
  consumed immediately, so memory is O(block² + n), never n×n and never a float64 copy of the features;
* RBF: the n×n Grams are formed (the median needs every distance).

Both estimators are invariant to translating the features, so features are centred (column means in
float64) before any product — which keeps float32 products accurate to ~1e-10 in CKA. A representation whose
centred energy Σ‖xᵢ − x̄‖² is ≤ (8 ε)² × its raw energy Σ‖xᵢ‖², ε the machine epsilon of the features' dtype
(identical up to float rounding, e.g. a layer's response to an all-zero input), is treated as exactly
constant. The guard is relative to the data's own scale and precision, so a large common offset does not
trip it: translation invariance holds at a mean of 1e5 × the spread in float32 and far beyond in float64
(tested).

**Guards.** Every (mini)batch needs n ≥ 4 samples (HSIC₁ divides by n − 3; the same rule is applied to the
biased estimator so switching estimators never changes which inputs are valid) → :class:`ConfigError`.
HSIC₁(K, K) is a squared norm of the U-centred K and so ≥ 0, but it is 0 for a constant representation and
can round to a tiny negative number; when HSIC(K,K) or HSIC(L,L) is ≤ 1e-12 × its scale (‖K‖²_F over the
estimator's normaliser), the CKA is **defined as 0.0 and flagged** ``degenerate``. **Non-finite** features
(NaN/inf activations of a diverged or overflowed layer) or HSICs give **NaN**, also flagged — never a number.
The unbiased cross term HSIC₁(K, L) may legitimately be negative: CKA then lies in [−1, 0) and is kept (only
rounding beyond ±1 is clipped).

**Minibatches** (Nguyen et al.): ``CKA = Σ_b HSIC(K_b, L_b) / sqrt(Σ_b HSIC(K_b, K_b) · Σ_b HSIC(L_b, L_b))``
over batches b of ≥ 4 samples (:class:`MinibatchCKA`); the RBF bandwidth is then per batch. One batch holding
every sample gives the full-sample estimate::

    import torch
    from probe.probes.cka_math import cka, MinibatchCKA
    x, y = torch.randn(256, 512), torch.randn(256, 40)
    cka(x, y)                                   # unbiased linear CKA, about 0
    acc = MinibatchCKA()
    for b in range(4):
        acc.update([x[b * 64:(b + 1) * 64]], [y[b * 64:(b + 1) * 64]])
    acc.result().values                         # (1, 1) array
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    "ESTIMATORS",
    "KERNELS",
    "MIN_SAMPLES",
    "MinibatchCKA",
    "as_samples",
    "check_kernel_params",
    "constant_rtol",
    "cka",
    "cka_details",
    "cka_estimates",
    "cka_from_hsic",
    "cka_matrix",
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


class _Rep:
    """Sufficient statistics of one representation's kernel matrix K: n, diag(K), K1, ‖K‖²_F, and either the
    centred features (linear kernel in feature space) or K itself, for cross terms Σ K∘L."""

    __slots__ = ("diag", "gram", "kk", "n", "row", "x")

    def __init__(self, n: int, diag: Tensor, row: Tensor, kk: float, x: Tensor | None, gram: Tensor | None):
        self.n, self.diag, self.row, self.kk, self.x, self.gram = n, diag, row, kk, x, gram

    @classmethod
    def from_features(cls, x: Any, kernel: str = "linear", threshold: float = 1.0) -> _Rep:
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
    def from_linear_gram(cls, gram: Tensor, kernel: str = "linear", threshold: float = 1.0) -> _Rep:
        g = gram.to(torch.float64)
        if g.dim() != 2 or g.shape[0] != g.shape[1]:
            raise ConfigError(f"a Gram matrix must be square, got shape {tuple(g.shape)}")
        _check_n(g.shape[0])
        k = rbf_from_linear(g, threshold) if kernel == "rbf" else g
        return cls(k.shape[0], torch.diagonal(k).clone(), k.sum(1), float((k * k).sum()), None, k)

    def cross(self, other: _Rep) -> float:
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

    def hsic_with(self, other: _Rep, estimator: str, kl: float | None = None) -> float:
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
    a, b = _Rep.from_linear_gram(kt), _Rep.from_linear_gram(lt)
    return a.hsic_with(b, estimator)


# ----------------------------------------------------------------------------------------------- full sample

def _sweep_linear(xt: Tensor, yt: Tensor, block_size: int, chunk: int) -> dict[str, Any]:
    """Statistics of K = X̄X̄ᵀ and L = ȲȲᵀ (centred) from Gram blocks, upper triangle only, O(block² + n)."""
    x, y = _native(xt), _native(yt)
    n = x.shape[0]
    mux, muy = _centre(x), _centre(y)
    if isinstance(x, np.ndarray):
        row_k, row_l, diag_k, diag_l = (np.zeros(n) for _ in range(4))
    else:
        row_k, row_l, diag_k, diag_l = (torch.zeros(n, dtype=torch.float64, device=x.device) for _ in range(4))
    kl = kk = ll = 0.0
    starts = list(range(0, n, block_size))
    for i in starts:
        ri = slice(i, min(n, i + block_size))
        for j in starts:
            if j < i:
                continue
            rj = slice(j, min(n, j + block_size))
            kb = _gram_block(x, mux, ri, rj, chunk)
            lb = _gram_block(y, muy, ri, rj, chunk)
            weight = 1.0 if i == j else 2.0
            kl += weight * float((kb * lb).sum())
            kk += weight * float((kb * kb).sum())
            ll += weight * float((lb * lb).sum())
            row_k[ri] += kb.sum(1)
            row_l[ri] += lb.sum(1)
            if i == j:
                diag_k[ri] = kb.diagonal()
                diag_l[ri] = lb.diagonal()
            else:
                row_k[rj] += kb.sum(0)
                row_l[rj] += lb.sum(0)
    vectors = [torch.as_tensor(v) for v in (row_k, row_l, diag_k, diag_l)]
    stats = {"n": n, "kl": kl, "kk": kk, "ll": ll, "row_k": vectors[0], "row_l": vectors[1],
             "diag_k": vectors[2], "diag_l": vectors[3]}
    for side, mu in (("k", mux), ("l", muy)):  # numerically constant representations count as constant
        if _nearly_constant(float(stats[f"diag_{side}"].sum()), n, mu):
            stats["kl"] = 0.0
            stats["kk" if side == "k" else "ll"] = 0.0
            stats[f"row_{side}"] = stats[f"row_{side}"] * 0.0
            stats[f"diag_{side}"] = stats[f"diag_{side}"] * 0.0
    return stats


def _pair_stats(x: Any, y: Any, kernel: str, threshold: float, block_size: int, chunk: int) -> dict[str, Any]:
    """Σ K∘L, Σ K∘K, Σ L∘L, row sums and diagonals of K and L for two representations (the cheaper exact
    route for the linear kernel, see the module docstring)."""
    xs, ys = as_samples(x), as_samples(y)
    if xs.shape[0] != ys.shape[0]:
        raise ConfigError(f"CKA needs the same samples on both sides, got n={xs.shape[0]} and n={ys.shape[0]}")
    n = xs.shape[0]
    _check_n(n)
    if block_size < MIN_SAMPLES or chunk < 1:
        raise ConfigError(f"block_size must be >= {MIN_SAMPLES} and chunk >= 1, got {block_size}, {chunk}")
    dx, dy = xs.shape[1], ys.shape[1]
    feature_cost = n * (dx * dy + dx * dx + dy * dy)
    gram_cost = n * n * (dx + dy) / 2
    if kernel == "linear" and (feature_cost > gram_cost or max(dx, dy) > 4096):
        if xs.device != ys.device:
            raise ConfigError(f"x and y are on different devices ({xs.device}, {ys.device})")
        return _sweep_linear(xs, ys, block_size, chunk)
    a = _Rep.from_features(xs, kernel, threshold)
    b = _Rep.from_features(ys, kernel, threshold)
    return {"n": n, "kl": a.cross(b), "kk": a.kk, "ll": b.kk, "row_k": a.row, "row_l": b.row,
            "diag_k": a.diag, "diag_l": b.diag}


def _value_from_stats(s: dict[str, Any], estimator: str) -> CKAValue:
    n = s["n"]
    hxy = _hsic_from_stats(n, s["kl"], s["row_k"], s["row_l"], s["diag_k"], s["diag_l"], estimator)
    hxx = _hsic_from_stats(n, s["kk"], s["row_k"], s["row_k"], s["diag_k"], s["diag_k"], estimator)
    hyy = _hsic_from_stats(n, s["ll"], s["row_l"], s["row_l"], s["diag_l"], s["diag_l"], estimator)
    value, degenerate = cka_from_hsic(hxy, hxx, hyy, scale_xx=_scale(n, s["kk"], estimator),
                                      scale_yy=_scale(n, s["ll"], estimator))
    return CKAValue(value, hxy, hxx, hyy, degenerate, n)


def cka_details(x: Any, y: Any, *, kernel: str = "linear", estimator: str = "unbiased", threshold: float = 1.0,
                block_size: int = 2048, chunk: int = 8192) -> CKAValue:
    """Full-sample CKA of ``x`` ``(n, ...)`` and ``y`` ``(n, ...)`` (same samples, any widths) with its parts.

    The linear kernel picks the cheaper exact route (feature space when the widths are small, else blockwise
    Grams of ``block_size`` rows — see the module docstring); memory stays O(block_size² + n + d)::

        cka_details(torch.randn(64, 1000), torch.randn(64, 1000)).value     # close to 0
    """
    check_kernel_params(kernel, estimator, threshold)
    return _value_from_stats(_pair_stats(x, y, kernel, threshold, block_size, chunk), estimator)


def cka_estimates(x: Any, y: Any, *, kernel: str = "linear", threshold: float = 1.0, block_size: int = 2048,
                  chunk: int = 8192) -> dict[str, CKAValue]:
    """Both estimators from one pass over the data: ``{"unbiased": CKAValue, "biased": CKAValue}``::

        est = cka_estimates(x, y)
        est["biased"].value - est["unbiased"].value      # the biased estimator's inflation
    """
    check_kernel_params(kernel, "unbiased", threshold)
    stats = _pair_stats(x, y, kernel, threshold, block_size, chunk)
    return {estimator: _value_from_stats(stats, estimator) for estimator in ESTIMATORS}


def cka(x: Any, y: Any, *, kernel: str = "linear", estimator: str = "unbiased", threshold: float = 1.0,
        block_size: int = 2048, chunk: int = 8192) -> float:
    """Full-sample CKA of two representations of the same n ≥ 4 samples (see :func:`cka_details`)::

        x = torch.randn(100, 20)
        cka(x, x @ torch.linalg.qr(torch.randn(20, 20))[0])    # 1.0: invariant to rotations
    """
    return cka_details(x, y, kernel=kernel, estimator=estimator, threshold=threshold, block_size=block_size,
                       chunk=chunk).value


def _matrix(reps_a: Sequence[_Rep], reps_b: Sequence[_Rep] | None, estimator: str, paired: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HSIC(a_i, b_j) (or (a_i, b_i) when paired), self HSICs and scales of both sides, for one batch."""
    symmetric = reps_b is None
    rb = reps_a if reps_b is None else reps_b
    if paired and len(reps_a) != len(rb):
        raise ConfigError(f"paired CKA needs as many representations on both sides, got {len(reps_a)} and {len(rb)}")
    self_a = np.array([r.self_hsic(estimator) for r in reps_a])
    scale_a = np.array([r.scale(estimator) for r in reps_a])
    self_b = self_a if symmetric else np.array([r.self_hsic(estimator) for r in rb])
    scale_b = scale_a if symmetric else np.array([r.scale(estimator) for r in rb])
    if paired:
        cross = np.array([a.hsic_with(b, estimator) for a, b in zip(reps_a, rb)])
    else:
        cross = np.zeros((len(reps_a), len(rb)))
        for i, a in enumerate(reps_a):
            for j, b in enumerate(rb):
                if symmetric and j < i:
                    cross[i, j] = cross[j, i]
                elif symmetric and j == i:
                    cross[i, j] = self_a[i]
                else:
                    cross[i, j] = a.hsic_with(b, estimator)
    return cross, self_a, self_b, scale_a, scale_b


def _finish(cross: np.ndarray, self_a: np.ndarray, self_b: np.ndarray, scale_a: np.ndarray, scale_b: np.ndarray,
            paired: bool) -> tuple[np.ndarray, np.ndarray]:
    values = np.zeros(cross.shape)
    flags = np.zeros(cross.shape, dtype=bool)
    for index in np.ndindex(cross.shape):
        i, j = (index[0], index[0]) if paired else index
        values[index], flags[index] = cka_from_hsic(float(cross[index]), float(self_a[i]), float(self_b[j]),
                                                    scale_xx=float(scale_a[i]), scale_yy=float(scale_b[j]))
    return values, flags


def cka_matrix(xs: Sequence[Any], ys: Sequence[Any] | None = None, *, kernel: str = "linear",
               estimator: str = "unbiased", threshold: float = 1.0, paired: bool = False) -> CKAMatrix:
    """Full-sample CKA between every representation in ``xs`` and every one in ``ys`` (``ys=None``: ``xs``
    against itself, symmetric), or between ``xs[i]`` and ``ys[i]`` when ``paired``. All share n samples::

        layers = [torch.randn(50, 8), torch.randn(50, 16)]
        cka_matrix(layers).values          # (2, 2), diagonal 1
    """
    check_kernel_params(kernel, estimator, threshold)
    reps_a = [_Rep.from_features(x, kernel, threshold) for x in xs]
    reps_b = None if ys is None else [_Rep.from_features(y, kernel, threshold) for y in ys]
    if paired and reps_b is None:
        raise ConfigError("paired CKA needs ys")
    cross, sa, sb, ca, cb = _matrix(reps_a, reps_b, estimator, paired)
    values, flags = _finish(cross, sa, sb, ca, cb, paired)
    return CKAMatrix(values, flags, reps_a[0].n if reps_a else 0, 1)


class MinibatchCKA:
    """Accumulate HSIC over minibatches (float64) and return CKA (Nguyen et al. 2021).

    ``update(xs, ys=None)`` takes one batch of features per representation (every batch ≥ 4 samples, the same
    samples on both sides); ``update_grams`` takes *linear* Gram matrices instead (e.g. reduced inside a
    forward hook, so features never pile up). ``ys=None`` compares ``xs`` with itself (a symmetric layer ×
    layer matrix); ``paired=True`` compares ``xs[i]`` with ``ys[i]`` only::

        acc = MinibatchCKA(kernel="linear", estimator="unbiased")
        for xb, yb in zip(x.split(32), y.split(32)):
            acc.update([xb], [yb])
        acc.result().values[0, 0]
    """

    def __init__(self, kernel: str = "linear", estimator: str = "unbiased", threshold: float = 1.0,
                 paired: bool = False):
        check_kernel_params(kernel, estimator, threshold)
        self.kernel, self.estimator, self.threshold, self.paired = kernel, estimator, threshold, paired
        self._sums: list[np.ndarray] | None = None
        self.n_samples = 0
        self.n_batches = 0
        self._symmetric: bool | None = None

    def update(self, xs: Sequence[Any], ys: Sequence[Any] | None = None) -> None:
        """Add one batch given as features (``(b, ...)`` each)."""
        reps_a = [_Rep.from_features(x, self.kernel, self.threshold) for x in xs]
        reps_b = None if ys is None else [_Rep.from_features(y, self.kernel, self.threshold) for y in ys]
        self._add(reps_a, reps_b)

    def update_grams(self, grams_a: Sequence[Tensor], grams_b: Sequence[Tensor] | None = None) -> None:
        """Add one batch given as linear Gram matrices ``(b, b)`` (centred or not: HSIC does not care)."""
        reps_a = [_Rep.from_linear_gram(g, self.kernel, self.threshold) for g in grams_a]
        reps_b = None if grams_b is None else [_Rep.from_linear_gram(g, self.kernel, self.threshold)
                                               for g in grams_b]
        self._add(reps_a, reps_b)

    def _add(self, reps_a: list[_Rep], reps_b: list[_Rep] | None) -> None:
        if not reps_a:
            raise ConfigError("a minibatch needs at least one representation")
        sizes = {r.n for r in reps_a} | ({r.n for r in reps_b} if reps_b else set())
        if len(sizes) != 1:
            raise ConfigError(f"every representation of a batch needs the same samples, got sizes {sorted(sizes)}")
        if self.paired and reps_b is None:
            raise ConfigError("paired CKA needs ys")
        symmetric = reps_b is None
        if self._symmetric is not None and symmetric != self._symmetric:
            raise ConfigError("do not mix batches with and without ys in one accumulator")
        self._symmetric = symmetric
        parts = _matrix(reps_a, reps_b, self.estimator, self.paired)
        if self._sums is None:
            self._sums = [np.array(p, dtype=np.float64) for p in parts]
        else:
            if parts[0].shape != self._sums[0].shape:
                raise ConfigError(f"batch has {parts[0].shape} pairs, earlier batches had {self._sums[0].shape}")
            for acc, part in zip(self._sums, parts):
                acc += part
        self.n_samples += reps_a[0].n
        self.n_batches += 1

    def result(self) -> CKAMatrix:
        """CKA from the accumulated HSICs (``degenerate`` where defined as 0, see the module docstring)."""
        if self._sums is None:
            raise ConfigError("no batch was added to the CKA accumulator")
        values, flags = _finish(*self._sums, paired=self.paired)
        return CKAMatrix(values, flags, self.n_samples, self.n_batches)
