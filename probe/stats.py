"""Uncertainty for every study-level number: bootstrap CIs over seeds, permutation p-values, effect sizes.

A study's unit of replication is the *trained model* (one seed of one cell). Every function here takes one
value per model and resamples models, never images, so a CI says how much a number would move with other
training seeds. Bootstraps are *stratified*: models are resampled with replacement within their cell (e.g.
within each ``n_backgrounds``), so every resample keeps the study's design. Intervals are percentile
intervals (Efron & Tibshirani 1993, ch. 13); p-values are two-sided permutation tests (scipy
``permutation_test``) of the null "the outcome does not depend on the factor".

::

    from probe.stats import spearman_test, mean_difference
    est = spearman_test(n_backgrounds, ood_removal, strata=n_backgrounds, seed=0)
    est.value, est.ci_low, est.ci_high, est.p_value          # rho, 95 % CI, permutation p
    mean_difference(removal_smooth, removal_natural).as_dict("gap")

With fewer than 2 models in some stratum a bootstrap cannot vary that cell: the CI is NaN and ``note`` says
why (a study with one seed per cell has no uncertainty estimate — say so rather than print a zero-width CI).
All randomness comes from ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ConfigError

__all__ = ["Estimate", "bootstrap", "hedges_g", "mean_ci", "mean_difference", "partial_eta_squared",
           "spearman", "spearman_test", "two_way_effects"]

N_BOOT = 2000
N_PERM = 9999
LEVEL = 0.95
NO_SEEDS = "one model per cell: no CI over seeds"


@dataclass(frozen=True)
class Estimate:
    """A number with its uncertainty: ``value``, percentile CI ``[ci_low, ci_high]`` at ``level``, a
    two-sided permutation ``p_value`` (NaN when not applicable), ``n`` models and a ``note`` (why a field
    is NaN)."""

    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    n: int = 0
    level: float = LEVEL
    note: str = ""

    def as_dict(self, prefix: str) -> dict[str, Any]:
        """``{prefix: value, prefix_ci_low, prefix_ci_high, prefix_p}`` for a table row."""
        return {prefix: self.value, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high,
                f"{prefix}_p": self.p_value}

    def excludes_zero(self) -> bool:
        """True when the CI lies entirely on one side of 0 (False when the CI is NaN)."""
        return bool(np.isfinite(self.ci_low) and np.isfinite(self.ci_high)
                    and (self.ci_low > 0 or self.ci_high < 0))


def _vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name}: values must be finite, got {np.count_nonzero(~np.isfinite(arr))} non-finite")
    return arr


def _check(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")


def _strata_index(strata: Any, n: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata).ravel()
    if len(labels) != n:
        raise ConfigError(f"strata has {len(labels)} labels for {n} values")
    _, codes = np.unique(labels, return_inverse=True)
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def bootstrap(statistic: Callable[[np.ndarray], Any], n: int, strata: Any = None, n_boot: int = N_BOOT,
              level: float = LEVEL, seed: int = 0, vectorized: bool = False) -> tuple[float, float, str]:
    """Percentile CI of ``statistic(idx)`` over stratified resamples ``idx`` of ``range(n)``.

    ``statistic`` gets an int index array (length n) and returns a float — or, with ``vectorized``, an
    (n_boot, n) array and returns n_boot floats. NaN resamples are dropped. Returns ``(low, high, note)``;
    NaN bounds with a note when some stratum has fewer than 2 members.
    """
    _check(n_boot, level)
    groups = _strata_index(strata, n)
    if min(len(g) for g in groups) < 2:
        return float("nan"), float("nan"), NO_SEEDS
    rng = np.random.default_rng(seed)
    idx = np.concatenate([g[rng.integers(0, len(g), (n_boot, len(g)))] for g in groups], axis=1)
    if vectorized:
        draws = np.asarray(statistic(idx), dtype=np.float64)
    else:
        draws = np.array([statistic(row) for row in idx], dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if len(draws) < max(10, n_boot // 2):
        return float("nan"), float("nan"), "statistic undefined in most resamples"
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high), ""


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when x or y is constant."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=-1) * (ry**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rx * ry).sum(axis=-1) / den
    return out if np.ndim(out) else float(out)


def _permutation_p(data: tuple, statistic: Callable, kind: str, n_perm: int, seed: int) -> float:
    from scipy.stats import permutation_test

    kwargs: dict[str, Any] = {"permutation_type": kind, "n_resamples": n_perm, "vectorized": True,
                              "alternative": "two-sided"}
    try:
        res = permutation_test(data, statistic, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:  # scipy < 1.15 spells it random_state
        res = permutation_test(data, statistic, random_state=np.random.default_rng(seed), **kwargs)
    return float(res.pvalue)


def spearman_test(x: Any, y: Any, strata: Any = None, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                  level: float = LEVEL, seed: int = 0) -> Estimate:
    """Spearman ρ of ``x`` with ``y`` (one pair per model) with a stratified bootstrap CI and a permutation p.

    ``strata``: a label per model (default: ``x`` itself, i.e. resample seeds within each design point).
    p: two-sided, pairings of ``y`` with ``x`` permuted (``n_perm`` random permutations, exact when that
    exceeds the number of distinct permutations; scipy ``permutation_test``).
    """
    x, y = _vector(x, "x"), _vector(y, "y")
    if len(x) != len(y):
        raise ConfigError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(float("nan"), n=len(x), note="fewer than 3 models or a constant variable")
    value = spearman(x, y)
    low, high, note = bootstrap(lambda i: spearman(x[i], y[i]), len(x), x if strata is None else strata,
                                n_boot, level, seed, vectorized=True)
    p = _permutation_p((y,), lambda yy, axis=-1: np.asarray(spearman(x, yy)), "pairings", n_perm, seed)
    return Estimate(value, low, high, p, len(x), level, note)


def mean_ci(values: Any, strata: Any = None, n_boot: int = N_BOOT, level: float = LEVEL,
            seed: int = 0) -> Estimate:
    """Mean of ``values`` (one per model) with a (stratified) bootstrap percentile CI; no p-value."""
    v = _vector(values, "values")
    if len(v) == 0:
        return Estimate(float("nan"), note="no models")
    low, high, note = bootstrap(lambda i: v[i].mean(axis=-1), len(v), strata, n_boot, level, seed, vectorized=True)
    return Estimate(float(v.mean()), low, high, float("nan"), len(v), level, note)


def hedges_g(a: Any, b: Any) -> float:
    """Standardised mean difference (mean a − mean b) / pooled SD with Hedges' small-sample correction
    J = 1 − 3 / (4 (n_a + n_b) − 9) (Hedges 1981). NaN with fewer than 2 values per group or SD 0."""
    a, b = _vector(a, "a"), _vector(b, "b")
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return float("nan")
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def mean_difference(a: Any, b: Any, strata_a: Any = None, strata_b: Any = None, n_boot: int = N_BOOT,
                    n_perm: int = N_PERM, level: float = LEVEL, seed: int = 0) -> Estimate:
    """mean(a) − mean(b) (one value per model in each group) with a bootstrap CI (models resampled within
    each group, and within ``strata_*`` when given) and a two-sided permutation p (group labels exchanged,
    scipy ``permutation_type="independent"``)."""
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) == 0 or len(b) == 0:
        return Estimate(float("nan"), note="an empty group")
    values = np.concatenate([a, b])
    sa = np.zeros(len(a), dtype=object) if strata_a is None else np.asarray(strata_a, dtype=object)
    sb = np.zeros(len(b), dtype=object) if strata_b is None else np.asarray(strata_b, dtype=object)
    labels = np.array([f"a|{s}" for s in sa] + [f"b|{s}" for s in sb])
    in_a = np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)]

    def stat(idx: np.ndarray) -> np.ndarray:  # (n_boot, n): group membership is kept by the strata
        v, m = values[idx], in_a[idx]
        return (v * m).sum(-1) / m.sum(-1) - (v * ~m).sum(-1) / (~m).sum(-1)

    low, high, note = bootstrap(stat, len(values), labels, n_boot, level, seed, vectorized=True)
    p = _permutation_p((a, b), lambda u, v, axis=-1: u.mean(axis=axis) - v.mean(axis=axis), "independent",
                       n_perm, seed)
    return Estimate(float(a.mean() - b.mean()), low, high, p, len(values), level, note)


def partial_eta_squared(frame: Any, formula: str) -> Any:
    """Reference implementation: statsmodels type-II ANOVA (``anova_lm(ols(formula).fit(), typ=2)``) with
    partial η² = SS_term / (SS_term + SS_residual). Returns the ANOVA table (pandas) with a column
    ``partial_eta_sq`` (NaN on the Residual row). :func:`two_way_effects` computes the same numbers with
    least squares on a design matrix built once (tested equal), which makes resampling cheap."""
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    table = anova_lm(ols(formula, data=frame).fit(), typ=2)
    resid = float(table.loc["Residual", "sum_sq"])
    table["partial_eta_sq"] = table["sum_sq"] / (table["sum_sq"] + resid)
    table.loc["Residual", "partial_eta_sq"] = float("nan")
    return table


class _TypeII:
    """Type-II sums of squares of every term of a patsy formula, from one design matrix (Fox 2016, §8.2):
    SS(T) = RSS(model without T and the terms containing T) − RSS(model without the terms containing T)."""

    def __init__(self, frame: Any, formula: str):
        from patsy import dmatrices

        y, x = dmatrices(formula, frame, return_type="matrix")
        self.y, self.x = np.asarray(y, dtype=np.float64)[:, 0], np.asarray(x, dtype=np.float64)
        info = x.design_info
        self.terms = [t for t in info.terms if t.factors]
        self.names = [t.name() for t in self.terms]
        slices = {t: info.term_slices[t] for t in info.terms}
        self.cols = {t: np.arange(self.x.shape[1])[s] for t, s in slices.items()}
        every = set(info.terms)
        self.pairs = {}
        for t in self.terms:
            above = {u for u in self.terms if set(t.factors) < set(u.factors)}
            self.pairs[t.name()] = (self._columns(every - above - {t}), self._columns(every - above))
        self.full = np.arange(self.x.shape[1])

    def _columns(self, terms: set) -> np.ndarray:
        return np.sort(np.concatenate([self.cols[t] for t in terms])) if terms else np.array([], int)

    @staticmethod
    def _rss(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        if x.shape[1] == 0:
            return float(y @ y), 0
        beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
        r = y - x @ beta
        return float(r @ r), int(rank)

    def table(self, rows: np.ndarray | None = None) -> dict[str, tuple[float, float, float]]:
        """{term: (partial η², df, F-test p)} on the given rows (all by default)."""
        from scipy.stats import f as f_dist

        x, y = (self.x, self.y) if rows is None else (self.x[rows], self.y[rows])
        rss_full, rank_full = self._rss(x, y)
        df_resid = len(y) - rank_full
        out = {}
        for name, (reduced, kept) in self.pairs.items():
            rss_a, rank_a = self._rss(x[:, reduced], y)
            rss_b, rank_b = self._rss(x[:, kept], y)
            ss, df = max(rss_a - rss_b, 0.0), rank_b - rank_a
            eta = ss / (ss + rss_full) if ss + rss_full > 0 else float("nan")
            p = float(f_dist.sf(ss / df / (rss_full / df_resid), df, df_resid)) if df > 0 and df_resid > 0 \
                and rss_full > 0 else float("nan")
            out[name] = (eta, float(df), p)
        return out


def two_way_effects(frame: Any, formula: str, unit: str, strata: Sequence[str], permute: Sequence[str] = (),
                    n_boot: int = 1000, n_perm: int = 999, level: float = LEVEL, seed: int = 0) -> Any:
    """Effect sizes (partial η², type-II ANOVA of an OLS fit of ``formula``) with bootstrap CIs over models.

    ``frame``: long table, one or more rows per model (``unit`` column, e.g. one row per test split).
    Bootstrap: whole models resampled within the cells given by the ``strata`` columns. ``permute``:
    model-level columns whose main effect also gets a permutation p (``p_perm``: the column shuffled across
    models, its partial η² recomputed; ≥ observed counts). ``p_F``: the ANOVA F-test p. Returns a DataFrame
    ``term, df, partial_eta_sq, ci_low, ci_high, p_F, p_perm``; the CI is NaN (``note``) with one model per
    cell.
    """
    import pandas as pd

    anova = _TypeII(frame, formula)
    base = anova.table()
    units = frame[unit].to_numpy()
    models = frame.drop_duplicates(unit).reset_index(drop=True)
    rows_of = [np.flatnonzero(units == m) for m in models[unit]]
    labels = models[list(strata)].astype(str).agg("|".join, axis=1).to_numpy() if strata else None
    cache: dict[bytes, dict] = {}

    def stat_for(term: str) -> Callable[[np.ndarray], float]:
        def stat(idx: np.ndarray) -> float:
            key = idx.tobytes()
            if key not in cache:
                cache[key] = anova.table(np.concatenate([rows_of[i] for i in idx]))
            return cache[key][term][0]
        return stat

    out = []
    for term in anova.names:
        low, high, note = bootstrap(stat_for(term), len(models), labels, n_boot, level, seed)
        eta, df, p = base[term]
        out.append({"term": term, "df": df, "partial_eta_sq": eta, "ci_low": low, "ci_high": high, "p_F": p,
                    "p_perm": float("nan"), "note": note})
    rng = np.random.default_rng(seed)
    for column in permute:
        term = next((t for t in anova.names if column in t and ":" not in t), None)
        if term is None:
            continue
        observed = base[term][0]
        hits = 0
        for _ in range(n_perm):
            shuffled = dict(zip(models[unit], rng.permutation(models[column].to_numpy())))
            perm = frame.assign(**{column: frame[unit].map(shuffled)})
            hits += _TypeII(perm, formula).table()[term][0] >= observed - 1e-12
        next(r for r in out if r["term"] == term)["p_perm"] = (hits + 1) / (n_perm + 1)
    return pd.DataFrame(out)
