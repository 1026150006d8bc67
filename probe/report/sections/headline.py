"""Headline numbers: does generalization to unseen rain fall as training backgrounds grow?

Spearman rank correlation of ``n_backgrounds`` with OOD rain removal (removal ratio) and with the
background reconstruction PSNR on the ID split, per family (and background source).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.report.context import ID_SPLIT, ReportContext, Section, Table, ood_split_names, without_axes


def headline_numbers(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per family × background source × OOD split with the two Spearman correlations."""
    from scipy.stats import spearmanr

    dec = metrics[(metrics["probe"] == "decomposition")] if len(metrics) else metrics
    if dec.empty or "n_backgrounds" not in dec:
        return pd.DataFrame()
    dec = dec[~without_axes(dec)]  # external networks have no n_backgrounds: they are in their own table
    if dec.empty:
        return pd.DataFrame()
    ood_splits = ood_split_names(dec["split"])
    rows = []
    group_keys = [k for k in ("family", "background") if k in dec]
    for keys, group in dec.groupby(group_keys, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        label = dict(zip(group_keys, keys))
        bg = group[(group["split"] == ID_SPLIT) & (group["metric"] == "psnr_bg_region")]
        for split in ood_splits:
            removal = group[(group["split"] == split) & (group["metric"] == "removal_ratio")]
            row = {**label, "ood_split": split, "n_models": int(removal["model_id"].nunique()),
                   "n_backgrounds": ",".join(str(int(v)) for v in sorted(removal["n_backgrounds"].unique()))}
            row["spearman_n_vs_ood_removal"] = _spearman(spearmanr, removal)
            row["spearman_n_vs_bg_psnr"] = _spearman(spearmanr, bg)
            smallest = removal[removal["n_backgrounds"] == removal["n_backgrounds"].min()]["value"].mean()
            largest = removal[removal["n_backgrounds"] == removal["n_backgrounds"].max()]["value"].mean()
            row["ood_removal_fewest"] = smallest
            row["ood_removal_most"] = largest
            rows.append(row)
    return pd.DataFrame(rows)


def _spearman(spearmanr, frame: pd.DataFrame) -> float:
    if frame["n_backgrounds"].nunique() < 3:
        return float("nan")
    value = spearmanr(frame["n_backgrounds"].astype(float), frame["value"].astype(float)).statistic
    return float(value) if np.isfinite(value) else float("nan")


def headline(ctx: ReportContext) -> Section | None:
    from probe.report.sections.external import external_table

    table = headline_numbers(ctx.metrics)
    external = external_table(ctx.metrics)
    tables = [Table("headline", "Complexity vs generalization", table.round(3))] if not table.empty else []
    if not external.empty:
        tables.append(Table("external_models", "Your networks beside the grid: decoupled metrics per split",
                            external, "Networks measured from their own checkpoints (no grid axes), beside the "
                            "grid's models with the fewest and the most training backgrounds per family. "
                            "removal_ratio: fraction of the degradation removed where it was (1 = all). "
                            "evaluation: synthetic = the study's splits (the grid's images); real pairs = "
                            "--eval-folder folders. Compare rows of the same evaluation only."))
    if not tables:
        return None
    text = ("Spearman ρ between the number of training backgrounds and (a) the fraction of unseen (OOD) rain "
            "removed, (b) the background PSNR on in-distribution rain. The papers' shortcut effect reads as "
            "ρ(n, OOD removal) < 0 — more (complex) backgrounds, less generalization — with ρ(n, background "
            "PSNR) ≥ 0.")
    return Section("Headline", tables=tables, text=text if not table.empty else "")
