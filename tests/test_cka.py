"""CKA / HSIC against a plain reference of Kornblith's and Nguyen's formulas written here (float64 numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probe.errors import ConfigError
from probe.methods.cka import MinibatchCKA, cka, cka_details, cka_estimates, cka_matrix
from probe.methods.hsic import cka_from_hsic, gram_linear, gram_rbf, hsic

# ----------------------------------------------------------------------------------- reference (full Grams)


def ref_gram_linear(x):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def ref_gram_rbf(x, threshold=1.0):
    """Kornblith et al.'s gram_rbf: sigma^2 = threshold^2 * median squared distance."""
    g = ref_gram_linear(x)
    sq_norms = np.diag(g)
    sq = -2 * g + sq_norms[:, None] + sq_norms[None, :]
    return np.exp(-sq / (2 * threshold**2 * np.median(sq)))


def ref_hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def ref_hsic_unbiased(k, l):
    """Nguyen et al.'s HSIC_1, literally as written in SCIENCE.md."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


REF_HSIC = {"biased": ref_hsic_biased, "unbiased": ref_hsic_unbiased}


def ref_cka(x, y, kernel="linear", estimator="unbiased", threshold=1.0):
    gram = (lambda a: ref_gram_rbf(a, threshold)) if kernel == "rbf" else ref_gram_linear
    k, l = gram(x), gram(y)
    h = REF_HSIC[estimator]
    return h(k, l) / math.sqrt(h(k, k) * h(l, l))


def related(rng, n, dx, dy, dtype=np.float64, offset=0.0):
    """x and a y that shares part of x's signal (so CKA is well inside (0, 1))."""
    x = rng.standard_normal((n, dx))
    mix = rng.standard_normal((dx, dy)) / math.sqrt(dx)
    y = np.maximum(x @ mix + 0.8 * rng.standard_normal((n, dy)), 0) + offset
    return (x + offset).astype(dtype), y.astype(dtype)


# ----------------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("shape", [(40, 7, 13), (24, 300, 500)], ids=["feature-space", "gram-blocks"])
def test_linear_cka_matches_reference(estimator, shape):
    rng = np.random.default_rng(1)
    x, y = related(rng, *shape)
    expected = ref_cka(x, y, "linear", estimator)
    # small blocks and chunks exercise the blockwise Gram path
    got = cka(torch.from_numpy(x), torch.from_numpy(y), estimator=estimator, block_size=7, chunk=64)
    assert abs(got - expected) < 1e-6
    assert 0.05 < expected < 0.99


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_float32_with_large_mean_matches_float64_reference(estimator):
    # post-ReLU-like features with a big offset: centring before float32 products keeps 1e-6
    rng = np.random.default_rng(2)
    x, y = related(rng, 64, 3000, 2000, dtype=np.float32, offset=25.0)
    expected = ref_cka(x.astype(np.float64), y.astype(np.float64), "linear", estimator)
    assert abs(cka(x, y, estimator=estimator, block_size=16, chunk=512) - expected) < 1e-6


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_rbf_cka_matches_reference(estimator, threshold):
    rng = np.random.default_rng(3)
    x, y = related(rng, 30, 6, 9)
    expected = ref_cka(x, y, "rbf", estimator, threshold)
    assert abs(cka(x, y, kernel="rbf", estimator=estimator, threshold=threshold) - expected) < 1e-6
    k = gram_rbf(torch.from_numpy(x), threshold).numpy()
    np.testing.assert_allclose(k, ref_gram_rbf(x, threshold), atol=1e-12)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_hsic_values_match_reference(estimator):
    rng = np.random.default_rng(4)
    x, y = related(rng, 12, 5, 4)
    k, l = ref_gram_linear(x), ref_gram_linear(y)
    assert hsic(k, l, estimator) == pytest.approx(REF_HSIC[estimator](k, l), rel=1e-9, abs=1e-12)
    # centring the Gram's features first does not change HSIC
    assert hsic(gram_linear(x).numpy(), l, estimator) == pytest.approx(REF_HSIC[estimator](k, l), rel=1e-9)
    details = cka_details(x, y, estimator=estimator)
    assert details.hsic_xx == pytest.approx(REF_HSIC[estimator](k, k), rel=1e-9)
    assert details.n == 12 and not details.degenerate
    assert cka_estimates(x, y)[estimator] == details  # both estimators from one pass


# ----------------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_invariances(kernel, estimator):
    rng = np.random.default_rng(5)
    x, y = related(rng, 36, 10, 12)
    base = cka(x, y, kernel=kernel, estimator=estimator)
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert cka(x @ q, y, kernel=kernel, estimator=estimator) == pytest.approx(base, abs=1e-9)
    assert cka(3.7 * x, 0.01 * y, kernel=kernel, estimator=estimator) == pytest.approx(base, abs=1e-9)
    assert cka(x, x, kernel=kernel, estimator=estimator) == pytest.approx(1.0, abs=1e-12)
    if kernel == "linear":  # translation does not matter either (features are centred)
        assert cka(x + 5.0, y - 2.0, estimator=estimator) == pytest.approx(base, abs=1e-9)


def test_independent_inputs_unbiased_near_zero_biased_inflated():
    rng = np.random.default_rng(6)
    unbiased, biased = [], []
    for _ in range(60):
        x, y = rng.standard_normal((32, 10)), rng.standard_normal((32, 10))
        unbiased.append(cka(x, y))
        biased.append(cka(x, y, estimator="biased"))
    assert abs(np.mean(unbiased)) < 0.03
    assert np.mean(biased) > 0.15  # the known inflation of the biased estimator at n = 32


# ----------------------------------------------------------------------------------- minibatches


def test_minibatch_equals_reference_minibatch_formula():
    rng = np.random.default_rng(7)
    x, y = related(rng, 60, 8, 200)
    sizes = [16, 16, 16, 12]
    bounds = np.cumsum([0] + sizes)
    num = den_x = den_y = 0.0
    acc = MinibatchCKA()
    acc_grams = MinibatchCKA()
    for a, b in zip(bounds[:-1], bounds[1:]):
        k, l = ref_gram_linear(x[a:b]), ref_gram_linear(y[a:b])
        num += ref_hsic_unbiased(k, l)
        den_x += ref_hsic_unbiased(k, k)
        den_y += ref_hsic_unbiased(l, l)
        acc.update([x[a:b]], [y[a:b]])
        acc_grams.update_grams([torch.from_numpy(k)], [torch.from_numpy(l)])
    expected = num / math.sqrt(den_x * den_y)
    result = acc.result()
    assert result.values.shape == (1, 1)
    assert abs(result.values[0, 0] - expected) < 1e-9
    assert abs(acc_grams.result().values[0, 0] - expected) < 1e-9
    assert result.n_samples == 60 and result.n_batches == 4


def test_single_batch_minibatch_is_full_sample_and_matrix_modes():
    rng = np.random.default_rng(8)
    x, y = related(rng, 20, 6, 30)
    z = rng.standard_normal((20, 4))
    acc = MinibatchCKA(kernel="rbf", estimator="biased")
    acc.update([x, y, z])
    full = cka_matrix([x, y, z], kernel="rbf", estimator="biased")
    np.testing.assert_allclose(acc.result().values, full.values, atol=1e-12)
    np.testing.assert_allclose(np.diag(full.values), 1.0, atol=1e-12)
    np.testing.assert_allclose(full.values, full.values.T, atol=1e-12)
    assert full.values[0, 1] == pytest.approx(ref_cka(x, y, "rbf", "biased"), abs=1e-6)
    paired = cka_matrix([x, y], [y, z], paired=True)
    assert paired.values.shape == (2,)
    assert paired.values[0] == pytest.approx(ref_cka(x, y), abs=1e-6)
    cross = cka_matrix([x, y], [z])
    assert cross.values.shape == (2, 1)
    assert cross.values[1, 0] == pytest.approx(ref_cka(y, z), abs=1e-6)


# ----------------------------------------------------------------------------------- guards


def test_fewer_than_four_samples_is_a_config_error():
    x = torch.randn(3, 5)
    with pytest.raises(ConfigError, match="at least 4"):
        cka(x, x)
    acc = MinibatchCKA()
    acc.update([torch.randn(4, 5)])
    with pytest.raises(ConfigError, match="at least 4"):
        acc.update([x])
    with pytest.raises(ConfigError, match="same samples"):
        cka(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ConfigError, match="kernel"):
        cka(x, x, kernel="cosine")
    with pytest.raises(ConfigError, match="estimator"):
        MinibatchCKA(estimator="debiased")


def test_degenerate_and_negative_hsic():
    rng = np.random.default_rng(9)
    constant = np.ones((10, 6)) * 3.0
    x = rng.standard_normal((10, 6))
    for estimator in ("unbiased", "biased"):
        for kernel in ("linear", "rbf"):
            d = cka_details(constant, x, kernel=kernel, estimator=estimator)
            assert d.value == 0.0 and d.degenerate
    # a self-HSIC that rounded below zero: defined as 0 and flagged
    assert cka_from_hsic(0.4, -1e-18, 2.0) == (0.0, True)
    value, flagged = cka_from_hsic(0.4, 1.0, float("nan"))  # broken input: NaN, flagged, never a number
    assert math.isnan(value) and flagged
    # the unbiased *cross* HSIC can be negative: CKA stays negative and finite
    values = [cka(rng.standard_normal((8, 3)), rng.standard_normal((8, 3))) for _ in range(40)]
    assert all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in values)
    assert min(values) < 0
    # identical up to float rounding counts as constant, on every route; a small but real variation does not
    jitter = (5.0 + 1e-7 * rng.standard_normal((10, 3000))).astype(np.float32)
    small = (5.0 + 1e-3 * rng.standard_normal((10, 3000))).astype(np.float32)
    for a in (jitter, jitter[:, :6]):
        assert cka_details(a, x).degenerate
        acc = MinibatchCKA()
        acc.update([a, x])
        assert acc.result().degenerate[0, 1]
    assert not cka_details(small, small[:, ::-1]).degenerate
    assert cka(small, 2 * small) == pytest.approx(1.0, abs=1e-6)
    # a degenerate layer in a matrix is flagged, the rest is untouched
    m = cka_matrix([x, constant])
    assert m.degenerate.tolist() == [[False, True], [True, True]]
    assert m.values[0, 0] == pytest.approx(1.0) and m.values[1, 1] == 0.0
    assert not np.isnan(m.values).any()


@pytest.mark.parametrize("dtype, offset, tol", [(torch.float32, 1e5, 1e-3), (torch.float64, 1e5, 1e-9),
                                                (torch.float64, 1e9, 1e-6)])
@pytest.mark.parametrize("width", [20, 6000])  # the feature-space route and the blockwise Gram route
def test_translation_invariance_survives_a_large_common_offset(dtype, offset, tol, width):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 20, generator=g, dtype=torch.float64)
    y = x @ torch.randn(20, 30, generator=g, dtype=torch.float64) + torch.randn(64, 30, generator=g,
                                                                                 dtype=torch.float64)
    xs = x.repeat(1, width // 20)
    ref = cka(xs, y)
    assert 0.2 < ref < 0.99
    shifted = cka_details((xs + offset).to(dtype), y.to(dtype))  # mean = offset x the spread (std 1)
    assert not shifted.degenerate and shifted.value == pytest.approx(ref, abs=tol)


def test_nonfinite_features_give_nan_never_a_number():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 100, generator=g)
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[3, 5] = bad
        for width in (slice(0, 10), slice(0, 100)):
            assert math.isnan(cka(x[:, width], y[:, width]))
            assert math.isnan(cka(x[:, width], y[:, width], kernel="rbf"))
        m = cka_matrix([x, y])
        assert m.values[0, 0] == pytest.approx(1.0) and np.isnan(m.values[0, 1]) and m.degenerate[0, 1]
        acc = MinibatchCKA()
        acc.update([x[:8]], [y[:8]])
        acc.update([x[8:]], [y[8:]])
        assert np.isnan(acc.result().values).all()
