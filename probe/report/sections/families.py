"""Family comparison: rank model families by OOD rain removal at each n_backgrounds; external networks (no
grid axes) get a row each beside the families' overall means."""

from __future__ import annotations

import pandas as pd

from probe.report.context import ReportContext, Section, Table, display_names, evaluation_kind, with_axes, without_axes


def _overview(grid: pd.DataFrame, ext: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if not grid.empty:
        n = pd.to_numeric(grid["n_backgrounds"], errors="coerce")
        for family, part in grid.assign(n=n).groupby("family"):
            rows.append({"model": str(family), "kind": "grid family", "evaluation": "synthetic",
                         "ood_removal": part["value"].mean(),
                         "ood_removal_fewest": part[part["n"] == part["n"].min()]["value"].mean(),
                         "ood_removal_most": part[part["n"] == part["n"].max()]["value"].mean()})
    ext = ext.assign(name=display_names(ext), evaluation=[evaluation_kind(e) for e in ext["eval"]])
    for (name, evaluation), part in ext.groupby(["name", "evaluation"]):
        rows.append({"model": name, "kind": "external", "evaluation": evaluation, "ood_removal": part["value"].mean()})
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby("evaluation")["ood_removal"].rank(ascending=False, method="min").astype(int)
    return table.round(3)


def families(ctx: ReportContext) -> Section | None:
    dec = ctx.probe_metrics("decomposition")
    if dec.empty:
        return None
    ood = dec[(dec["metric"] == ctx.task.removal_metric) & dec["split"].isin(ctx.ood_splits())]
    if ood.empty:
        return None
    grid, ext = ood[with_axes(ood)], ood[without_axes(ood)]
    n_families = grid["family"].nunique() if "family" in grid else 0
    tables = []
    if n_families >= 2:
        keys = ["n_backgrounds", "family"]
        mean = grid.groupby(keys)["value"].mean().reset_index()
        mean["rank"] = mean.groupby("n_backgrounds")["value"].rank(ascending=False, method="min").astype(int)
        table = mean.pivot(index="n_backgrounds", columns="family", values="value").round(3)
        ranks = mean.pivot(index="n_backgrounds", columns="family", values="rank")
        table.columns = [f"{c} (removal)" for c in table.columns]
        ranks.columns = [f"{c} (rank)" for c in ranks.columns]
        tables.append(Table("family_ranking", f"OOD {ctx.task.noun} removal by family (1 = best)",
                            table.join(ranks).reset_index(),
                            "Mean removal ratio over OOD splits, background sources and seeds."))
    if not ext.empty:
        tables.append(Table("family_overview", f"Families and your networks on {ctx.task.unseen} (OOD)",
                            _overview(grid, ext),
                            "Mean removal ratio over OOD splits (grid families: over all their models, and at the "
                            "fewest / most training backgrounds). Ranks are within one evaluation."))
    if not tables:
        return None
    return Section("Model families", tables=tables)
