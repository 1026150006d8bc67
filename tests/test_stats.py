"""probe.stats against scipy / statsmodels references and known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from probe.errors import ConfigError
from probe.stats import (
    NO_SEEDS,
    hedges_g,
    mean_ci,
    mean_difference,
    partial_eta_squared,
    spearman,
    spearman_test,
    two_way_effects,
)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = np.repeat([1, 4, 16, 64], 3).astype(float)
    y = rng.normal(size=12)
    y[3] = y[4]
    assert spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_permutation_p_is_exact_for_small_n():
    # x, y perfectly anti-ordered: rho = -1; exactly 2 of 5! pairings reach |rho| = 1
    est = spearman_test([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], strata=[0, 0, 0, 0, 0], n_boot=200)
    assert est.value == pytest.approx(-1.0)
    assert est.p_value == pytest.approx(2 / 120)


def test_spearman_permutation_p_matches_enumeration():
    x = np.array([1, 1, 4, 4, 16, 16], float)
    y = np.array([0.5, 0.4, 0.45, 0.3, 0.2, 0.35])
    observed = abs(spearman(x, y))
    hits = sum(abs(spearman(x, np.array(p))) >= observed - 1e-12 for p in itertools.permutations(y))
    est = spearman_test(x, y, n_boot=200)
    assert est.p_value == pytest.approx(hits / 720)


def test_bootstrap_mean_ci_agrees_with_scipy_percentile():
    v = np.random.default_rng(1).normal(2.0, 1.0, 40)
    ours = mean_ci(v, n_boot=20000, seed=3)
    ref = sps.bootstrap((v,), np.mean, n_resamples=20000, method="percentile",
                        rng=np.random.default_rng(4)).confidence_interval
    assert ours.value == pytest.approx(v.mean())
    assert ours.ci_low == pytest.approx(ref.low, abs=0.03)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.03)
    assert ours.ci_low < ours.value < ours.ci_high


def test_one_seed_per_cell_gives_no_ci_and_says_why():
    est = spearman_test([1, 4, 16, 64], [0.5, 0.4, 0.2, 0.1])
    assert np.isnan(est.ci_low) and np.isnan(est.ci_high) and est.note == NO_SEEDS
    assert est.value == pytest.approx(-1.0) and 0 < est.p_value < 0.1
    assert not est.excludes_zero()


def test_ci_shrinks_with_clean_trend_and_covers_zero_without_one():
    rng = np.random.default_rng(2)
    x = np.repeat([1, 4, 16, 64, 256], 3).astype(float)
    trend = spearman_test(x, -np.log2(x) + rng.normal(0, 0.3, x.size), seed=0)
    assert trend.value < -0.8 and trend.excludes_zero() and trend.ci_high < 0 and trend.p_value < 0.01
    nulls = [spearman_test(x, rng.normal(size=x.size), seed=k) for k in range(20)]
    assert sum(e.p_value < 0.05 for e in nulls) <= 3  # ~5 % false positives expected
    # the CI of a null is wider than that of a clean trend
    width = np.median([e.ci_high - e.ci_low for e in nulls])
    assert width > 2 * (trend.ci_high - trend.ci_low)


def test_mean_difference_known_answer_and_exact_p():
    est = mean_difference([1, 2, 3], [4, 5, 6], n_boot=500)
    assert est.value == pytest.approx(-3.0)
    assert est.p_value == pytest.approx(2 / 20)  # only the two extreme splits of C(6, 3) = 20
    assert est.ci_high < 0


def test_hedges_g_known_answer():
    # pooled SD 1, d = -1, J = 1 - 3 / (4 * 6 - 9) = 0.8
    assert hedges_g([1, 2, 3], [2, 3, 4]) == pytest.approx(-0.8)
    assert np.isnan(hedges_g([1], [2, 3]))


def test_partial_eta_squared_one_way_equals_r_squared():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 5), "y": rng.normal(size=15)})
    frame.loc[frame.g == "c", "y"] += 2
    table = partial_eta_squared(frame, "y ~ C(g)")
    grand = frame.y.mean()
    ss_between = sum(len(p) * (p.y.mean() - grand) ** 2 for _, p in frame.groupby("g"))
    assert table.loc["C(g)", "partial_eta_sq"] == pytest.approx(ss_between / ((frame.y - grand) ** 2).sum())


def test_type_ii_anova_matches_statsmodels_with_interactions():
    from probe.stats import _TypeII

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"bg": rng.choice(["s", "n"], 60), "split": rng.choice(["a", "b", "c"], 60),
                          "n": rng.choice([1, 16, 256], 60).astype(float)})
    frame["value"] = (frame.bg == "s") * 0.4 - 0.05 * np.log2(frame.n) * (frame.split == "b") + rng.normal(0, .1, 60)
    formula = "value ~ C(bg) * C(split) + np.log2(n) * C(split)"
    ref = partial_eta_squared(frame, formula)
    ours = _TypeII(frame, formula).table()
    for term, (eta, df, p) in ours.items():
        assert eta == pytest.approx(ref.loc[term, "partial_eta_sq"], rel=1e-9, abs=1e-12)
        assert df == ref.loc[term, "df"]
        assert p == pytest.approx(ref.loc[term, "PR(>F)"], rel=1e-7, abs=1e-15)


def test_two_way_effects_find_the_real_factor():
    rng = np.random.default_rng(6)
    rows = []
    for bg in ("smooth", "natural"):
        for n in (1, 16, 256):
            for seed in range(3):
                for split in ("ood", "ood2"):
                    rows.append({"model_id": f"{bg}-{n}-{seed}", "background": bg, "n": n, "split": split,
                                 "value": (0.5 if bg == "smooth" else 0.05) + rng.normal(0, 0.03)})
    frame = pd.DataFrame(rows)
    table = two_way_effects(frame, "value ~ C(background) + C(split)", "model_id", ["background", "n"],
                            permute=["background"], n_boot=200, n_perm=49).set_index("term")
    assert table.loc["C(background)", "partial_eta_sq"] > 0.9
    assert table.loc["C(background)", "ci_low"] > 0.8
    assert table.loc["C(background)", "p_perm"] < 0.05 and table.loc["C(background)", "p_F"] < 1e-6
    assert table.loc["C(split)", "partial_eta_sq"] < 0.2


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="finite"):
        spearman_test([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ConfigError, match="differ in length"):
        spearman_test([1, 2, 3], [1, 2])
    with pytest.raises(ConfigError, match="n_boot"):
        mean_ci([1, 2], n_boot=0)
