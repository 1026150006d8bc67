"""Family comparison: rank model families by OOD rain removal at each n_backgrounds."""

from __future__ import annotations

from probe.report.context import ReportContext, Section, Table


def families(ctx: ReportContext) -> Section | None:
    if len(ctx.families()) < 2:
        return None
    dec = ctx.probe_metrics("decomposition")
    ood = dec[(dec["metric"] == "removal_ratio") & dec["split"].isin(ctx.ood_splits())]
    if ood.empty:
        return None
    keys = [k for k in ("n_backgrounds", "family") if k in ood]
    mean = ood.groupby(keys)["value"].mean().reset_index()
    mean["rank"] = mean.groupby("n_backgrounds")["value"].rank(ascending=False, method="min").astype(int)
    table = mean.pivot(index="n_backgrounds", columns="family", values="value").round(3)
    ranks = mean.pivot(index="n_backgrounds", columns="family", values="rank")
    table.columns = [f"{c} (removal)" for c in table.columns]
    ranks.columns = [f"{c} (rank)" for c in ranks.columns]
    return Section("Model families", tables=[Table(
        "family_ranking", "OOD rain removal by family (1 = best)", table.join(ranks).reset_index(),
        "Mean removal ratio over OOD splits, background sources and seeds.")])
