"""Validity of the ``shortcut`` score: does a score computed without OOD data rank models by OOD failure?

Spearman ρ between each trained model's ``shortcut`` score (ID-only indicators, :mod:`probe.shortcut`) and its
OOD removal (of rain, noise or blur: the study's task), per OOD split, over all models and leaving one
background source out at a time (so a score
that only separates sources shows it). 95 % bootstrap CI over seeds (models resampled within their source ×
n_backgrounds cell) and a permutation p. The target of issue 12 is ρ ≤ −0.8 (a higher score, less OOD rain
removed); the section says plainly when the score misses it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.report.context import ReportContext, Section, Table, ood_split_names
from probe.report.sections.headline import N_BOOT, N_PERM, SEED, _trained, cells

TARGET = -0.8


def score_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model × OOD split: score, OOD removal, background, n_backgrounds."""
    if not len(metrics) or "shortcut" not in set(metrics["probe"]):
        return pd.DataFrame()
    trained = _trained(metrics)
    score = trained[(trained["probe"] == "shortcut") & (trained["metric"] == "score")]
    score = score.groupby("model_id")["value"].mean().rename("score")
    from probe.tasks import task_of

    removal_metric = task_of(metrics).removal_metric
    dec = trained[(trained["probe"] == "decomposition") & (trained["metric"] == removal_metric)]
    dec = dec[dec["split"].isin(ood_split_names(dec["split"]))]
    keep = {c: (c, "first") for c in ("background", "n_backgrounds") if c in dec}
    per = dec.groupby(["model_id", "split"], as_index=False).agg(ood_removal=("value", "mean"), **keep)
    out = per.merge(score, left_on="model_id", right_index=True).dropna(subset=["score", "ood_removal"])
    if "background" not in out:
        out["background"] = "all"
    return out


def score_validity(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                   seed: int = SEED) -> pd.DataFrame:
    """Rows: OOD split × scope (``all models`` / ``without <source>``) with ρ(score, OOD removal), CI, p."""
    from probe.stats import spearman_test

    frame = score_frame(metrics)
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for split, part in frame.groupby("split"):
        sources = sorted(part["background"].astype(str).unique())
        scopes = [("all models", part)]
        if len(sources) > 1:
            scopes += [(f"without {s}", part[part["background"].astype(str) != s]) for s in sources]
        for scope, sub in scopes:
            est = spearman_test(sub["score"].to_numpy(), sub["ood_removal"].to_numpy(), strata=cells(sub),
                                n_boot=n_boot, n_perm=n_perm, seed=seed)
            rows.append({"ood_split": split, "scope": scope, "n_models": len(sub),
                         **est.as_dict("spearman_score_vs_ood_removal"),
                         "meets_target": bool(np.isfinite(est.value) and est.value <= TARGET), "note": est.note})
    return pd.DataFrame(rows)


def indicator_validity(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                       seed: int = SEED) -> pd.DataFrame:
    """Rows: OOD split × indicator (every stored ``z``, the score's and the weight-0 diagnostics) with ρ(z,
    OOD removal) over all trained models, CI and p, and the indicator's weight in the score — so a reader sees
    which indicators track OOD failure in this study, not only the one the score uses."""
    from probe.shortcut import WEIGHTS
    from probe.stats import spearman_test

    frame = score_frame(metrics)
    if frame.empty:
        return pd.DataFrame()
    trained = _trained(metrics)
    z = trained[(trained["probe"] == "shortcut") & (trained["metric"] == "z")]
    if z.empty or "indicator" not in z:
        return pd.DataFrame()
    z = z.pivot_table(index="model_id", columns="indicator", values="value")
    rows = []
    for split, part in frame.groupby("split"):
        part = part.set_index("model_id")
        strata = cells(part)
        for name in z.columns:
            x = z[name].reindex(part.index)
            ok = x.notna().to_numpy()
            est = spearman_test(x.to_numpy()[ok], part["ood_removal"].to_numpy()[ok], strata=strata[ok],
                                n_boot=n_boot, n_perm=n_perm, seed=seed)
            rows.append({"ood_split": split, "indicator": name, "weight": WEIGHTS.get(name, 0.0),
                         "n_models": int(ok.sum()), **est.as_dict("spearman_z_vs_ood_removal"), "note": est.note})
    return pd.DataFrame(rows)


def validity_text(table: pd.DataFrame) -> str:
    """Plain sentences: where the score meets ρ ≤ −0.8 and where it fails."""
    if table.empty:
        return "The shortcut score was not measured (add \"shortcut\" to the study's probes)."
    parts = []
    for _, row in table.iterrows():
        v, lo, hi = (row["spearman_score_vs_ood_removal"], row["spearman_score_vs_ood_removal_ci_low"],
                     row["spearman_score_vs_ood_removal_ci_high"])
        if not np.isfinite(v):
            parts.append(f"{row['ood_split']}, {row['scope']} ({row['n_models']} models): not computable "
                         f"({row['note']})")
            continue
        ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
        status = "meets the target ρ ≤ −0.8" if row["meets_target"] else (
            "FAILS the target ρ ≤ −0.8" + (" and its CI includes 0" if np.isfinite(lo) and lo <= 0 <= hi else ""))
        parts.append(f"{row['ood_split']}, {row['scope']} ({row['n_models']} models): ρ = {v:.2f}{ci}, "
                     f"p = {row['spearman_score_vs_ood_removal_p']:.3g} — {status}")
    return "; ".join(parts) + "."


def _plot(frame: pd.DataFrame, task):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    splits = sorted(frame["split"].unique())
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        part = frame[frame["split"] == split]
        sns.scatterplot(data=part, x="score", y="ood_removal", hue="background",
                        size="n_backgrounds" if "n_backgrounds" in part else None, ax=ax)
        ax.set_title(split)
        ax.set_xlabel("shortcut score (ID data only)")
        ax.set_ylabel(f"OOD {task.removed} (ratio)")
    fig.tight_layout()
    return fig


def shortcut(ctx: ReportContext) -> Section | None:
    table = score_validity(ctx.metrics)
    if table.empty:
        return None
    task = ctx.task
    text = ("Each model's shortcut score (robust z of the share of its removal attributed to the "
            f"{task.noun} input, on the training {task.noun} over every source's backgrounds; higher = more "
            f"shortcut; no OOD data used, see docs/probes.md) against the {task.unseen} it removes. Validation: "
            + validity_text(table))
    section = Section("Shortcut score: validated against OOD failure", text=text,
                      tables=[Table("shortcut_validity", "ρ(shortcut score, OOD removal), 95% CI over seeds",
                                    table.round(4))])
    per_indicator = indicator_validity(ctx.metrics)
    if not per_indicator.empty:
        section.tables.append(Table("shortcut_indicators", "Every indicator against OOD failure (ρ of its z)",
                                    per_indicator.round(4), caption="z is signed so that higher = more shortcut: "
                                    "an indicator that tracks OOD failure has ρ < 0. weight: its weight in the "
                                    "score (the others are stored diagnostics; docs/probes.md says why)."))
    scores = ctx.probe_metrics("shortcut")
    z = scores[scores["metric"].isin(["z", "score"])]
    if len(z) and "indicator" in z:
        wide = z.assign(indicator=z["indicator"].fillna("").replace("", "score")).pivot_table(
            index="model_id", columns="indicator", values="value")
        section.tables.append(Table("shortcut_scores", "Score and indicator z per model",
                                    wide.reset_index().round(3)))
    section.figures.append(ctx.save(_plot(score_frame(ctx.metrics), task), "shortcut_validity",
                                    "Shortcut score vs OOD removal", "One point per trained model."))
    return section
