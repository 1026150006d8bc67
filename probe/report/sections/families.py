"""Family comparison: rank model families by OOD rain removal at each n_backgrounds; external networks (no
grid axes) get a row each beside the families' means, like for like: per background source and OOD split
(the rows of one source share its images). Results on folders of real pairs are listed under their own split
names (e.g. a BasicSR option file's ``ValSet``) — a real test set of unknown relation to training is not
"unseen rain" — and ranked only among themselves."""

from __future__ import annotations

import pandas as pd

from probe.analysis.sources import REAL, with_source
from probe.report.context import ReportContext, Section, Table, display_names, with_axes, without_axes

NA_NOTE = ("removal_fewest / removal_most are kept for grid families (the mean of their models with the fewest / "
           "the most training backgrounds); an external network has one number, removal.")


def _grid_rows(grid: pd.DataFrame) -> list[dict]:
    rows = []
    n = pd.to_numeric(grid["n_backgrounds"], errors="coerce")
    for (family, source, split), part in grid.assign(n=n).groupby(["family", "source", "split"]):
        rows.append({"model": str(family), "kind": "grid family", "evaluation": "synthetic", "source": source,
                     "split": split, "removal": part["value"].mean(),
                     "removal_fewest": part[part["n"] == part["n"].min()]["value"].mean(),
                     "removal_most": part[part["n"] == part["n"].max()]["value"].mean()})
    return rows


def _external_rows(ext: pd.DataFrame) -> list[dict]:
    ext = ext.assign(name=display_names(ext))
    return [{"model": name, "kind": "external", "evaluation": "real pairs" if source == REAL else "synthetic",
             "source": source, "split": split, "removal": part["value"].mean()}
            for (name, source, split), part in ext.groupby(["name", "source", "split"])]


def overview(grid: pd.DataFrame, ext: pd.DataFrame) -> pd.DataFrame:
    """One row per grid family / external network × source × split (``grid``, ``ext``: removal rows with a
    ``source`` column); ``rank`` (1 = most removed) within one source and split."""
    rows = (_grid_rows(grid) if not grid.empty and "family" in grid else []) + _external_rows(ext)
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby(["source", "split"])["removal"].rank(ascending=False, method="min").astype(int)
    order = {"synthetic": 0, "real pairs": 1}
    table = table.sort_values(["evaluation", "source", "split", "rank"], key=lambda c: c.map(order).fillna(0)
                              if c.name == "evaluation" else c, kind="stable")
    return table.reset_index(drop=True).round(3)


def _ranking(grid: pd.DataFrame, ctx: ReportContext) -> Table:
    keys = ["n_backgrounds", "family"]
    mean = grid.groupby(keys)["value"].mean().reset_index()
    mean["rank"] = mean.groupby("n_backgrounds")["value"].rank(ascending=False, method="min").astype(int)
    table = mean.pivot(index="n_backgrounds", columns="family", values="value").round(3)
    ranks = mean.pivot(index="n_backgrounds", columns="family", values="rank")
    table.columns = [f"{c} (removal)" for c in table.columns]
    ranks.columns = [f"{c} (rank)" for c in ranks.columns]
    return Table("family_ranking", f"OOD {ctx.task.noun} removal by family (1 = best)",
                 table.join(ranks).reset_index(), "Mean removal ratio over OOD splits, background sources and seeds.")


def _overview_title(ctx: ReportContext, synthetic: bool, real: bool) -> str:
    if synthetic and real:
        return f"Families and your networks on {ctx.task.unseen} (OOD) per source, and on real pairs per split"
    if real:
        return "Your networks on real pairs, per split (their own test sets)"
    return f"Families and your networks on {ctx.task.unseen} (OOD), per source"


def families(ctx: ReportContext) -> Section | None:
    dec = ctx.probe_metrics("decomposition")
    if dec.empty:
        return None
    dec = with_source(dec[(dec["metric"] == ctx.task.removal_metric) & (dec["split"] != "clean")])
    real = dec["source"] == REAL
    ood = dec[~real & dec["split"].isin(ctx.ood_splits())]
    grid, ext = ood[with_axes(ood)], pd.concat([ood[without_axes(ood)], dec[real & without_axes(dec)]])
    tables = []
    if "family" in grid and grid["family"].nunique() >= 2:
        tables.append(_ranking(grid, ctx))
    if not ext.empty:
        has_real = bool((ext["source"] == REAL).any())
        tables.append(Table(
            "family_overview", _overview_title(ctx, bool((ext["source"] != REAL).any()), has_real),
            overview(grid, ext),
            "Mean removal ratio per source and split (grid families: over all their models, and at the fewest / "
            "most training backgrounds). Ranks are within one source and split: compare rows of the same source "
            "only." + (" real pairs: your folders of pairs (e.g. an option file's validation sets), under their "
                       "own split names — not the study's unseen rain." if has_real else ""), na_note=NA_NOTE))
    if not tables:
        return None
    return Section("Model families", tables=tables)
