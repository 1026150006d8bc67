"""The attribution section's table of external networks: each on every background source of the study, beside
the grid's models with the fewest and the most training backgrounds of that source
(:func:`probe.analysis.external.external_table`, same attribution parameters as the grid's rows)."""

from __future__ import annotations

from probe.report.context import ReportContext, Section, Table

PROBE = "attribution"


def external_attribution(ctx: ReportContext, section: Section, params: str | None, metrics: list[str]) -> None:
    """External networks' Diffusion Index and shares per source × split × window, beside the grid's models with
    the fewest and the most training backgrounds of that source (same attribution parameters)."""
    from probe.analysis.external import external_table

    rows = ctx.metrics[ctx.metrics["probe"] == PROBE] if ctx.metrics is not None and len(ctx.metrics) else None
    if rows is None or rows.empty:
        return
    if params and "params" in rows:
        rows = rows[rows["params"] == params]
    table = external_table(rows, columns=[(PROBE, m) for m in metrics], by=["window"])
    if not table.empty:
        section.tables.append(Table(
            "attribution_external", "Attribution of external networks beside the grid", table,
            "Each external network on each background source of the study (the same images and rain as that "
            "source's grid models), next to the grid's models with the fewest and the most training backgrounds; "
            "means over attributed images."))
