"""The n-trend: both sides of the papers' trade-off against the number of distinct training backgrounds n.

Papers A and B (SCIENCE.md, "The trade-off"): as n grows, a network stops reconstructing content and fits the
degradation, so it removes *less* unseen degradation (OOD removal falls) while its reconstruction of new
backgrounds improves (ID background fidelity rises). Small n is memorised: the background side of the trade-off.

Per family × background source, from one number per trained model (its mean over the evaluation images):

* :func:`ntrend_curves` — the mean of each side at every n with a 95 % bootstrap CI over seeds (models
  resampled within each n): OOD removal (``removal_ratio`` of each OOD split, the fraction of the unseen
  degradation removed where it was, 1 = all) and ID fidelity (the task's, e.g. background PSNR in dB);
* :func:`turning_point` — the n where OOD removal turns: the n of the highest mean removal (the peak), its
  bootstrap distribution over seeds (the percentile interval of the peak's n, and how often it is the smallest
  or the largest n), the change from the smallest to the largest n with a CI (``falls``: CI below 0, the
  papers' direction; ``rises``: CI above 0, reversed) and, for an interior peak, the fall from it to the
  largest n with a CI. The peak is chosen on the same data as that CI, so a ``turns`` verdict (an interior
  peak with both the rise to it and the fall after it excluding 0) is optimistic: it counts on fresh seeds.

::

    from probe.analysis.ntrend import ntrend_numbers
    curves, turns = ntrend_numbers(metrics)      # tidy store metrics (probe.store.read_metrics)

Pure functions of a frame (no files, no plotting); inputs with fewer than 3 values of n give empty frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: bootstrap size, level and seed (fixed: every number of a report is reproducible)
N_BOOT, LEVEL, SEED = 2000, 0.95, 0
#: the fewest distinct values of n for a study to "vary n" (and have a trend)
MIN_N_VALUES = 3


_CI_KEYS = ("n_peak_ci_low", "n_peak_ci_high", "p_peak_smallest", "p_peak_largest", "fall_ci_low", "fall_ci_high",
            "change_ci_low", "change_ci_high", "change_t_low", "change_t_high")


def _resample_means(n: np.ndarray, values: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct n and an (n_boot, len(levels)) array of per-n means over stratified resamples
    (models drawn with replacement within each n)."""
    rng = np.random.default_rng(seed)
    levels = np.unique(n)
    draws = np.empty((n_boot, len(levels)))
    for j, level in enumerate(levels):
        v = values[n == level]
        draws[:, j] = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    return levels, draws


def ntrend_curve(n: object, values: object, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
                 ) -> pd.DataFrame:
    """One row per distinct n (ascending): ``n``, ``mean``, ``ci_low``, ``ci_high`` (percentile bootstrap over
    the models at that n; NaN with fewer than 2), ``models``. ``n`` and ``values`` are 1-D, one per model."""
    n, values = np.asarray(n, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(n) & np.isfinite(values)
    n, values = n[keep], values[keep]
    if len(n) == 0:
        return pd.DataFrame(columns=["n", "mean", "ci_low", "ci_high", "models"])
    levels, draws = _resample_means(n, values, n_boot, seed)
    alpha = (1 - level) / 2
    rows = []
    for j, lv in enumerate(levels):
        v = values[n == lv]
        low, high = np.quantile(draws[:, j], [alpha, 1 - alpha]) if len(v) > 1 else (np.nan, np.nan)
        rows.append({"n": int(lv), "mean": float(v.mean()), "ci_low": float(low), "ci_high": float(high),
                     "models": len(v)})
    return pd.DataFrame(rows)


def turning_point(n: object, values: object, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
                  ) -> dict[str, object]:
    """Where OOD removal turns, from one value per model. Returns ``n_peak`` (n of the highest mean),
    ``n_peak_ci_low`` / ``n_peak_ci_high`` (percentile interval of the peak's n over resamples),
    ``p_peak_smallest`` / ``p_peak_largest`` (share of resamples peaking at the smallest / largest n),
    ``fall`` (mean at the peak − mean at the largest n) with ``fall_ci_low`` / ``fall_ci_high``, ``change``
    (largest n − smallest n) with its CI, ``shape`` and ``n_values``. ``shape``: ``falls`` (the change's CI
    below 0: the papers' direction; where it starts to fall is ``n_peak``), ``rises`` (its CI above 0: the
    reverse), ``turns`` (neither, but an interior peak whose fall to the largest n has its CI above 0) or
    ``flat``.
    Every verdict needs both the bootstrap CI and the Welch t-interval (``change_t_low`` / ``change_t_high``
    for the change) to exclude 0: with 3 seeds per n the percentile bootstrap alone is too narrow (pure noise
    read as a trend in ~30 % of flat data sets; with both, see tests/test_ntrend.py). Needs every n to have ≥ 2
    models for the CIs (NaN otherwise, shape ``"n/a"``)."""
    n, values = np.asarray(n, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(n) & np.isfinite(values)
    n, values = n[keep], values[keep]
    levels = np.unique(n)
    out: dict[str, object] = {"n_values": len(levels)}
    if len(levels) < 2:
        return out | {"shape": "n/a"}
    means = np.array([values[n == lv].mean() for lv in levels])
    peak = int(np.argmax(means))
    out |= {"n_peak": int(levels[peak]), "removal_peak": float(means[peak]),
            "removal_smallest_n": float(means[0]), "removal_largest_n": float(means[-1]),
            "fall": float(means[peak] - means[-1]), "change": float(means[-1] - means[0])}
    if min(np.count_nonzero(n == lv) for lv in levels) < 2:
        return out | dict.fromkeys(_CI_KEYS, np.nan) | {"shape": "n/a"}
    _, draws = _resample_means(n, values, n_boot, seed)
    peaks = np.argmax(draws, axis=1)
    alpha = (1 - level) / 2
    log_peak = np.log2(levels[peaks])
    lo, hi = np.quantile(log_peak, [alpha, 1 - alpha])
    # the peak is fixed at the point estimate's (re-choosing it per resample makes every fall >= 0)
    fall, rise = draws[:, peak] - draws[:, -1], draws[:, peak] - draws[:, 0]
    change = draws[:, -1] - draws[:, 0]
    f_lo, f_hi = np.quantile(fall, [alpha, 1 - alpha])
    r_lo = np.quantile(rise, alpha)
    c_lo, c_hi = np.quantile(change, [alpha, 1 - alpha])
    out |= {"n_peak_ci_low": float(2 ** lo), "n_peak_ci_high": float(2 ** hi),
            "p_peak_smallest": float(np.mean(peaks == 0)), "p_peak_largest": float(np.mean(peaks == len(levels) - 1)),
            "fall_ci_low": float(f_lo), "fall_ci_high": float(f_hi),
            "change_ci_low": float(c_lo), "change_ci_high": float(c_hi)}
    # with 3 seeds per n a percentile bootstrap is too narrow (it misses the (k-1)/k variance and the t tail):
    # a verdict needs the Welch t-interval of the same difference to exclude 0 too (as the remedies' verdict)
    by_n = [values[n == lv] for lv in levels]
    t_change = welch_interval(by_n[-1], by_n[0], level)
    t_fall, t_rise = welch_interval(by_n[peak], by_n[-1], level), welch_interval(by_n[peak], by_n[0], level)
    out |= {"change_t_low": t_change[0], "change_t_high": t_change[1]}
    if c_hi < 0 and t_change[1] < 0:
        shape = "falls"
    elif c_lo > 0 and t_change[0] > 0:
        shape = "rises"
    elif 0 < peak < len(levels) - 1 and f_lo > 0 and r_lo > 0 and t_fall[0] > 0 and t_rise[0] > 0:
        shape = "turns"
    else:
        shape = "flat"
    return out | {"shape": shape}


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Welch t-interval of mean(a) − mean(b) (unequal variances; NaN with fewer than 2 values on a side or no
    spread at all)."""
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan"), float("nan")
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return float(ci.low), float(ci.high)


def _per_model(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"))
    frame = frame[np.isfinite(frame["value"])]
    return frame.groupby([*keys, "model_id"], dropna=False).agg(
        n=("n_backgrounds", "first"), value=("value", "mean")).reset_index()


def ntrend_numbers(metrics: pd.DataFrame, fidelity_metric: str | None = None, removal_metric: str | None = None,
                   n_boot: int = N_BOOT, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sides of the trade-off from tidy store metrics (``probe``, ``split``, ``metric``, ``value``,
    ``model_id``, ``n_backgrounds`` and the grid axes; anchors — a non-empty ``role`` — are left out).

    Returns ``(curves, turns)``: ``curves`` has one row per family × background × side × split × n (``side``
    ``"ood_removal"`` on every OOD split, ``"id_fidelity"`` on ``id``; ``metric`` names the quantity) from
    :func:`ntrend_curve`; ``turns`` one row per family × background × OOD split from :func:`turning_point`
    plus the ID side's ``fidelity_change`` (largest − smallest n, bootstrap CI over seeds). Both empty
    when the models span fewer than :data:`MIN_N_VALUES` values of n. Metric names default to the task's
    (:func:`probe.tasks.task_of`).
    """
    empty = pd.DataFrame(), pd.DataFrame()
    if not len(metrics) or "n_backgrounds" not in metrics:
        return empty
    if fidelity_metric is None or removal_metric is None:
        from probe.tasks import task_of

        task = task_of(metrics)
        fidelity_metric = fidelity_metric or task.fidelity_metric
        removal_metric = removal_metric or task.removal_metric
    dec = metrics[(metrics["probe"] == "decomposition")]
    dec = dec[pd.to_numeric(dec["n_backgrounds"], errors="coerce").notna()]
    if "role" in dec:
        role = dec["role"]
        dec = dec[role.isna() | role.astype(str).isin(["", "model", "nan", "None"])]
    if pd.to_numeric(dec["n_backgrounds"], errors="coerce").nunique() < MIN_N_VALUES:
        return empty
    keys = [k for k in ("family", "background") if k in dec]
    ood = sorted(set(dec["split"]) - {"id", "clean", "all", "probe_set"})
    curves, turns, fidelity = [], [], {}
    sides = [("id_fidelity", "id", fidelity_metric)] + [("ood_removal", s, removal_metric) for s in ood]
    for side, split, metric in sides:
        part = _per_model(dec[(dec["split"] == split) & (dec["metric"] == metric)], keys)
        for label, group in part.groupby(keys, dropna=False) if keys else [((), part)]:
            label = dict(zip(keys, label if isinstance(label, tuple) else (label,)))
            curve = ntrend_curve(group["n"], group["value"], n_boot=n_boot, seed=seed)
            curves.append(curve.assign(**label, side=side, split=split, metric=metric))
            if side == "id_fidelity":
                tp = turning_point(group["n"], group["value"], n_boot=n_boot, seed=seed)
                fidelity[tuple(label.values())] = {
                    "fidelity_metric": metric, "fidelity_smallest_n": tp.get("removal_smallest_n", np.nan),
                    "fidelity_largest_n": tp.get("removal_largest_n", np.nan),
                    **{f"fidelity_{k}": tp.get(k, np.nan) for k in ("change", "change_ci_low", "change_ci_high")}}
            else:
                turns.append({**label, "ood_split": split, "metric": metric,
                              **turning_point(group["n"], group["value"], n_boot=n_boot, seed=seed)})
    if not curves:
        return empty
    curves_frame = pd.concat(curves, ignore_index=True)
    order = [*keys, "side", "split", "metric", "n", "mean", "ci_low", "ci_high", "models"]
    turns = [row | fidelity.get(tuple(row[k] for k in keys), {}) for row in turns]
    return curves_frame[order], pd.DataFrame(turns)
