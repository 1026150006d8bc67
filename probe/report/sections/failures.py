"""What failed: every probe (or model load) that failed during ``probe measure``, with its one-line cause."""

from __future__ import annotations

from probe.report.context import FAILED_PROBE, ReportContext, Section, Table, display_names


def failures(ctx: ReportContext) -> Section | None:
    frame = ctx.probe_metrics(FAILED_PROBE)
    if frame.empty:
        return None
    table = frame.assign(model=display_names(frame))
    cols = [c for c in ("model", "failed_probe", "cause") if c in table]
    table = table[cols].drop_duplicates().sort_values(cols[:2]).reset_index(drop=True)
    return Section("Failures", tables=[Table(
        "failures", f"{len(table)} failed probe run(s)", table,
        "Recorded by `probe measure`, which went on with the rest; rerunning it retries them.")],
        text="These results are missing from every other section.")
