"""Shortcut section (renders :mod:`probe.analysis.validity`): does a score computed without OOD data rank
models by OOD failure, and where do your networks sit?

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

from probe.analysis.validity import (  # noqa: F401 - re-exported: the section renders these numbers
    TARGET,
    indicator_validity,
    readings,
    score_frame,
    score_rule,
    score_validity,
)
from probe.report.context import ReportContext, Section, Table, display_names


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


def _external_points(ctx: ReportContext) -> pd.DataFrame:
    """External networks' (score, OOD removal) per OOD split and source: markers beside the grid's points."""
    from probe.analysis.external import external_rows
    from probe.analysis.rows import ood_split_names

    ext = external_rows(ctx.metrics)
    if ext.empty:
        return ext
    score = ext[(ext["probe"] == "shortcut") & (ext["metric"] == "score")].groupby("name")["value"].mean()
    dec = ext[(ext["probe"] == "decomposition") & (ext["metric"] == ctx.task.removal_metric)]
    dec = dec[dec["split"].isin(ood_split_names(dec["split"]))]
    out = dec.groupby(["name", "split", "source"], as_index=False)["value"].mean().rename(
        columns={"value": "ood_removal"})
    out["score"] = out["name"].map(score)
    return out.dropna(subset=["score"])


def _plot(frame: pd.DataFrame, task, external: pd.DataFrame | None = None):
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
        mine = external[external["split"] == split] if external is not None and len(external) else None
        for _, row in (mine.iterrows() if mine is not None else []):  # your networks, one star per source
            ax.scatter([row["score"]], [row["ood_removal"]], marker="*", s=140, color="k", zorder=5)
            ax.annotate(f"{row['name']} ({row['source']})", (row["score"], row["ood_removal"]), fontsize=6,
                        xytext=(4, 4), textcoords="offset points")
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
        caption = ("z is signed so that higher = more shortcut: an indicator that tracks OOD failure has ρ < 0. "
                   "weight: its weight in the score (the others are stored diagnostics; docs/probes.md says why). "
                   "coverage: trained models with the indicator (the cem_* ones need the `cem` probe measured); "
                   "ρ over those.")
        section.tables.append(Table("shortcut_indicators", "Every indicator against OOD failure (ρ of its z)",
                                    per_indicator.round(4), caption=caption))
    scores = ctx.probe_metrics("shortcut")
    z = scores[scores["metric"].isin(["z", "score"])]
    if len(z) and "indicator" in z:
        wide = z.assign(indicator=z["indicator"].fillna("").replace("", "score")).pivot_table(
            index="model_id", columns="indicator", values="value")
        section.tables.append(Table("shortcut_scores", "Score and indicator z per model",
                                    wide.reset_index().round(3)))
    rule = score_rule(ctx.metrics)
    if rule:
        section.text += f" Rule (as stored with the scores): {rule.get('rule', '?')}."
    read = readings(ctx.metrics)
    if not read.empty:
        names = display_names(ctx.metrics.drop_duplicates("model_id")).set_axis(
            ctx.metrics.drop_duplicates("model_id")["model_id"].to_numpy())
        read = read.assign(model=[names.get(m, m) for m in read["model_id"]])
        section.tables.append(Table(
            "shortcut_readings", "Your networks on the grid's distribution (shortcut reading)",
            read[["model", "kind", "indicator", "value", "percentile", "percentile_lo", "percentile_hi", "ci",
                  "verdict"]].round(3),
            caption="percentile: where the network's weighted indicator sits among the grid's trained models "
            "(0 = below every one: content-like; 100 = above every one: shortcut-like), with a 95% bootstrap CI "
            "over its own images. The grid's scores are not moved by it; anchors are listed in the verdict."))
    section.figures.append(ctx.save(_plot(score_frame(ctx.metrics), task, _external_points(ctx)),
                                    "shortcut_validity", "Shortcut score vs OOD removal",
                                    "One point per trained model; stars: your networks on each source's images."))
    return section
