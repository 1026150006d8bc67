"""Headline statistics: does generalization to an unseen degradation fall as training backgrounds grow complex?

The headline (:func:`complexity_numbers`): Spearman ρ of the *measured* complexity of each model's training
backgrounds (mean PNG bits per pixel, :mod:`probe.data.complexity`; it moves with the background source and
with ``n_backgrounds``) with its OOD removal, over every trained model of a family, per OOD split. The papers'
shortcut effect reads as ρ < 0. Within each source (:func:`headline_numbers`): Spearman ρ of
``n_backgrounds`` with OOD removal (removal ratio of the rain / noise / blur) and with the
in-distribution content fidelity of the study's task (:class:`probe.tasks.Task`: background PSNR for rain,
image PSNR for noise, flat-region PSNR for blur; the column keeps the name ``spearman_n_vs_bg_psnr``) on the ID
split, per family × background source × OOD split, each with a 95 % bootstrap CI over seeds (models
resampled within each ``n_backgrounds``) and a two-sided permutation p (:mod:`probe.stats`).
:func:`source_differences` gives the gap in OOD removal between background sources (mean difference with CI,
permutation p, Hedges g). One point = one trained model (grid kind; its mean over the evaluation images).
Pure functions of tidy metrics; :mod:`probe.report.sections.headline` renders them.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from probe.analysis.rows import ID_SPLIT, ood_split_names, study_task, trained_rows, with_axes

#: the bootstrap / permutation sizes of the report (fixed: every number of a report is reproducible)
N_BOOT, N_PERM, SEED = 2000, 9999, 0


def _per_model(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model: n_backgrounds and the mean value over its finite rows (a model whose rows are all
    NaN — flagged non-finite by its probe — is left out of the statistics; its tables show it as n/a)."""
    frame = frame[np.isfinite(pd.to_numeric(frame["value"], errors="coerce"))]
    return frame.groupby("model_id").agg(n_backgrounds=("n_backgrounds", "first"), value=("value", "mean"))


def _trained(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the grid's trained models only (never anchors nor external networks)."""
    return trained_rows(frame)


def headline_numbers(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                     seed: int = SEED) -> pd.DataFrame:
    """One row per family × background source × OOD split: the two Spearman ρ with CI and p, the OOD
    removal of the fewest / most backgrounds (mean over seeds, with CI), and the seeds per cell. The fidelity
    metric is the task's (:func:`probe.tasks.task_of`; named in column ``fidelity_metric``)."""
    from probe.stats import mean_ci, spearman_test

    task = study_task(metrics)
    fidelity, removal_metric = task.fidelity_metric, task.removal_metric

    dec = metrics[(metrics["probe"] == "decomposition")] if len(metrics) else metrics
    if dec.empty or "n_backgrounds" not in dec:
        return pd.DataFrame()
    dec = _trained(dec[with_axes(dec)])  # external networks (no n_backgrounds) have their own table
    if dec.empty:
        return pd.DataFrame()
    ood_splits = ood_split_names(dec["split"])
    rows = []
    group_keys = [k for k in ("family", "background") if k in dec]
    for keys, group in dec.groupby(group_keys, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        label = dict(zip(group_keys, keys))
        bg = _per_model(group[(group["split"] == ID_SPLIT) & (group["metric"] == fidelity)])
        for split in ood_splits:
            removal = _per_model(group[(group["split"] == split) & (group["metric"] == removal_metric)])
            if removal.empty:
                continue
            n = removal["n_backgrounds"].astype(float)
            if n.nunique() < 2:  # this study does not vary n_backgrounds here (e.g. the remedies study)
                continue
            seeds = removal.groupby("n_backgrounds").size()
            row = {**label, "ood_split": split, "n_models": len(removal),
                   "n_backgrounds": ",".join(str(int(v)) for v in sorted(n.unique())),
                   "seeds_per_n": f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"}
            rho = _rho(spearman_test, n, removal["value"], n_boot, n_perm, seed)
            row.update(rho.as_dict("spearman_n_vs_ood_removal"))
            rho_bg = _rho(spearman_test, bg["n_backgrounds"].astype(float), bg["value"], n_boot, n_perm, seed)
            row.update(rho_bg.as_dict("spearman_n_vs_bg_psnr"))
            for name, pick in (("fewest", n.min()), ("most", n.max())):
                values = removal.loc[n == pick, "value"]
                est = mean_ci(values, n_boot=n_boot, seed=seed)
                row[f"ood_removal_{name}"] = est.value
                row[f"ood_removal_{name}_ci_low"], row[f"ood_removal_{name}_ci_high"] = est.ci_low, est.ci_high
            row["fidelity_metric"], row["removal_metric"] = fidelity, removal_metric
            row["note"] = rho.note
            rows.append(row)
    return pd.DataFrame(rows)


#: the measured background complexity the headline ranks models by (model info column, bits per pixel)
COMPLEXITY = "complexity_png_bpp"


def complexity_numbers(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                       seed: int = SEED, measure: str = COMPLEXITY) -> pd.DataFrame:
    """The headline: one row per family × OOD split, Spearman ρ of the training backgrounds' measured
    complexity (:data:`COMPLEXITY`, PNG bits per pixel) with OOD removal over the trained models, with a 95 %
    bootstrap CI over seeds (models resampled within each background × n_backgrounds cell) and a permutation
    p; and the same ρ with the task's in-distribution fidelity. ``measure``: another ``complexity_*`` column
    (:func:`complexity_by_measure` runs them all). Empty when no model has the measure."""
    from probe.stats import spearman_test

    task = study_task(metrics)
    dec = metrics[metrics["probe"] == "decomposition"] if len(metrics) else metrics
    if dec.empty or measure not in dec or "n_backgrounds" not in dec:
        return pd.DataFrame()
    dec = _trained(dec[with_axes(dec) & pd.to_numeric(dec[measure], errors="coerce").notna()])
    rows = []
    for family, part in (dec.groupby("family", dropna=False) if "family" in dec else [(None, dec)]):
        fidelity = _complexity_per_model(part, ID_SPLIT, task.fidelity_metric, measure)
        for split in ood_split_names(part["split"]):
            removal = _complexity_per_model(part, split, task.removal_metric, measure)
            if removal.empty:
                continue
            rho = spearman_test(removal["x"].astype(float), removal["value"], strata=cells(removal, "cell", "n"),
                                n_boot=n_boot,
                                n_perm=n_perm, seed=seed)
            row = {"family": family, "ood_split": split, "measure": measure, "n_models": len(removal),
                   "sources": ",".join(sorted(removal["cell"].unique())),
                   "complexity_min": float(removal["x"].min()), "complexity_max": float(removal["x"].max()),
                   **rho.as_dict("spearman_complexity_vs_ood_removal")}
            if len(fidelity):
                row.update(spearman_test(fidelity["x"].astype(float), fidelity["value"],
                                         strata=cells(fidelity, "cell", "n"),
                                         n_boot=n_boot, n_perm=n_perm, seed=seed)
                           .as_dict("spearman_complexity_vs_fidelity"))
            row["fidelity_metric"], row["removal_metric"], row["note"] = (task.fidelity_metric,
                                                                         task.removal_metric, rho.note)
            rows.append(row)
    return pd.DataFrame(rows)


def complexity_by_measure(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                          seed: int = SEED) -> pd.DataFrame:
    """:func:`complexity_numbers` under every stored complexity measure (``complexity_*`` columns: PNG and
    JPEG bits per pixel, gradient magnitude, spatial information, spectral slope, entropy), stacked — does the
    headline depend on which measure ranks the backgrounds? (The spectral slope is *less* negative for more
    complex images, so it enters as is.)"""
    measures = [c for c in metrics.columns if c.startswith("complexity_")] if len(metrics) else []
    frames = [complexity_numbers(metrics, n_boot, n_perm, seed, measure=m) for m in measures]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def cells(frame: pd.DataFrame, background: str = "background", n: str = "n_backgrounds") -> np.ndarray:
    """One label per row, ``"<background>|<n>"``: the bootstrap strata (models are resampled within their
    background × n_backgrounds cell, i.e. over seeds); a missing column counts as one value."""
    def column(name: str) -> pd.Series:
        return frame[name].astype(str) if name in frame else pd.Series("", index=frame.index)
    return (column(background) + "|" + column(n)).to_numpy()


def _complexity_per_model(part: pd.DataFrame, split: str, metric: str, measure: str) -> pd.DataFrame:
    sel = part[(part["split"] == split) & (part["metric"] == metric)]
    sel = sel[np.isfinite(pd.to_numeric(sel["value"], errors="coerce"))]
    return sel.groupby("model_id").agg(x=(measure, "first"), value=("value", "mean"),
                                       cell=("background", lambda b: str(b.iloc[0])), n=("n_backgrounds", "first"))


def _rho(spearman_test, x: pd.Series, y: pd.Series, n_boot: int, n_perm: int, seed: int):
    from probe.stats import Estimate

    if x.nunique() < 2:
        return Estimate(float("nan"), note="one value of n_backgrounds")
    return spearman_test(x.to_numpy(), y.to_numpy(), strata=x.to_numpy(), n_boot=n_boot, n_perm=n_perm,
                         seed=seed)


def source_differences(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                       seed: int = SEED) -> pd.DataFrame:
    """OOD removal gap between every pair of background sources (per family and OOD split), pooled over
    ``n_backgrounds``: mean difference (first − second) with a bootstrap CI (models resampled within each
    source × n_backgrounds cell), a permutation p and Hedges' g."""
    from probe.stats import hedges_g, mean_difference

    removal_metric = study_task(metrics).removal_metric
    dec = metrics[(metrics["probe"] == "decomposition") & (metrics["metric"] == removal_metric)] \
        if len(metrics) else metrics
    if dec.empty or "background" not in dec or dec["background"].nunique() < 2:
        return pd.DataFrame()
    dec = _trained(dec)
    rows = []
    families = dec.groupby("family", dropna=False) if "family" in dec else [(None, dec)]
    for family, part in families:
        for split in ood_split_names(part["split"]):
            per = part[part["split"] == split].groupby("model_id").agg(
                background=("background", "first"), n=("n_backgrounds", "first"), value=("value", "mean"))
            for a, b in combinations(sorted(per["background"].unique()), 2):
                va, vb = per[per["background"] == a], per[per["background"] == b]
                est = mean_difference(va["value"], vb["value"], strata_a=va["n"], strata_b=vb["n"],
                                      n_boot=n_boot, n_perm=n_perm, seed=seed)
                rows.append({"family": family, "ood_split": split, "source_a": a, "source_b": b,
                             "ood_removal_a": va["value"].mean(), "ood_removal_b": vb["value"].mean(),
                             **est.as_dict("difference"), "hedges_g": hedges_g(va["value"], vb["value"]),
                             "n_models": est.n, "note": est.note})
    return pd.DataFrame(rows)
