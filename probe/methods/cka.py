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
    from probe.methods.cka import cka, MinibatchCKA
    x, y = torch.randn(256, 512), torch.randn(256, 40)
    cka(x, y)                                   # unbiased linear CKA, about 0
    acc = MinibatchCKA()
    for b in range(4):
        acc.update([x[b * 64:(b + 1) * 64]], [y[b * 64:(b + 1) * 64]])
    acc.result().values                         # (1, 1) array
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.errors import ConfigError
from probe.methods.hsic import (
    ESTIMATORS,
    MIN_SAMPLES,
    CKAMatrix,
    CKAValue,
    KernelStats,
    _centre,
    _check_n,
    _gram_block,
    _hsic_from_stats,
    _native,
    _nearly_constant,
    _scale,
    as_samples,
    check_kernel_params,
    cka_from_hsic,
)

__all__ = ["MinibatchCKA", "cka", "cka_details", "cka_estimates", "cka_matrix"]

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
    a = KernelStats.from_features(xs, kernel, threshold)
    b = KernelStats.from_features(ys, kernel, threshold)
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


def _matrix(reps_a: Sequence[KernelStats], reps_b: Sequence[KernelStats] | None, estimator: str, paired: bool
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
    reps_a = [KernelStats.from_features(x, kernel, threshold) for x in xs]
    reps_b = None if ys is None else [KernelStats.from_features(y, kernel, threshold) for y in ys]
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
        reps_a = [KernelStats.from_features(x, self.kernel, self.threshold) for x in xs]
        reps_b = None if ys is None else [KernelStats.from_features(y, self.kernel, self.threshold) for y in ys]
        self._add(reps_a, reps_b)

    def update_grams(self, grams_a: Sequence[Tensor], grams_b: Sequence[Tensor] | None = None) -> None:
        """Add one batch given as linear Gram matrices ``(b, b)`` (centred or not: HSIC does not care)."""
        reps_a = [KernelStats.from_linear_gram(g, self.kernel, self.threshold) for g in grams_a]
        reps_b = None if grams_b is None else [KernelStats.from_linear_gram(g, self.kernel, self.threshold)
                                               for g in grams_b]
        self._add(reps_a, reps_b)

    def _add(self, reps_a: list[KernelStats], reps_b: list[KernelStats] | None) -> None:
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
