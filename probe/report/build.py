"""Build the report of a study from its store alone: figures (PNG + PDF), tables and ``report.html``.

::

    from probe.report.build import build_report
    html = build_report("reports/derain_complexity")     # -> reports/derain_complexity/report.html
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

from probe.report.context import ReportContext, Section
from probe.report.sections import ORDER, SECTIONS

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em}
th{background:#f4f4f4}figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}.note{color:#555}
"""


NA_MARK = "n/a†"  # how a report table shows NaN (explained under each table that has one: na_footnote)
#: columns of a table that say, per row, why a number is missing
REASON_COLUMNS = ("flag", "note")


def na_footnote(table: Any) -> str:
    """The footnote under a report table with blank cells (``""`` when it has none): the section's own
    ``na_note`` when given, else the table's reason column (``flag`` / ``note``) when it has one, else only
    what holds for every blank — never a pointer to a column the reader cannot see."""
    if not table.frame.isna().to_numpy().any():
        return ""
    if table.na_note:
        return f"{NA_MARK}: {html.escape(table.na_note)}"
    reasons = [c for c in REASON_COLUMNS if c in table.frame]
    if reasons:
        return (f"{NA_MARK}: no number — undefined or computed from non-finite values; this table's "
                f"<code>{reasons[0]}</code> column says why.")
    return f"{NA_MARK}: no number — undefined, not applicable to that row, or computed from non-finite values."


def build_sections(ctx: ReportContext, names: list[str] | None = None) -> list[Section]:
    sections = []
    for name in names or ORDER + [n for n in SECTIONS.names() if n not in ORDER]:
        try:
            section = SECTIONS.get(name)(ctx)
        except Exception as exc:  # one broken figure must not lose the rest of the report
            warnings.warn(f"report section {name!r} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            section = Section(name, text=f"(section failed: {html.escape(str(exc))})")
        if section is not None:
            sections.append(_reworded(section, ctx))
    return sections


def _reworded(section: Section, ctx: ReportContext) -> Section:
    """A section's prose (title, text, table and figure titles and captions) in the study's task words
    (:meth:`probe.tasks.Task.reword`; unchanged for rain). Figure contents are drawn by the sections."""
    task = ctx.task
    if task.decomposition == "rain":
        return section
    section.title, section.text = task.reword(section.title), task.reword(section.text)
    for item in [*section.tables, *section.figures]:
        item.title, item.caption = task.reword(item.title), task.reword(item.caption)
    return section


def build_report(directory: str | Path) -> Path:
    ctx = ReportContext.load(directory)
    sections = build_sections(ctx)
    out = ctx.directory / "report.html"
    out.write_text(render(ctx, sections), encoding="utf-8")
    ctx.metrics.to_csv(ctx.directory / "metrics.csv", index=False)
    for section in sections:
        for table in section.tables:
            table.frame.to_csv(ctx.directory / f"{table.name}.csv", index=False)
    return out


def render(ctx: ReportContext, sections: list[Section]) -> str:
    name = (ctx.study or {}).get("name") or ctx.directory.name
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>probe report: {html.escape(name)}"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>probe report: {html.escape(name)}</h1>",
             f"<p class='note'>{len(ctx.metrics['model_id'].unique()) if len(ctx.metrics) else 0} models, "
             f"probes: {', '.join(sorted(ctx.metrics['probe'].unique())) if len(ctx.metrics) else 'none'}; "
             f"store: {html.escape(str(ctx.store.name))}; all numbers in <code>metrics.csv</code>.</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for table in section.tables:
            parts.append(f"<h3>{html.escape(table.title)}</h3>")
            parts.append(table.frame.to_html(index=False, na_rep=NA_MARK, float_format=lambda v: f"{v:.4g}"))
            if table.caption:
                parts.append(f"<p class='note'>{html.escape(table.caption)}</p>")
            note = na_footnote(table)  # issue 12/13: a missing number is marked, never shown as 0
            if note:
                parts.append(f"<p class='note'>{note}</p>")
        for figure in section.figures:
            parts.append(f"<figure><img src='{html.escape(figure.png)}' alt='{html.escape(figure.title)}'>"
                         f"<figcaption><b>{html.escape(figure.title)}.</b> {html.escape(figure.caption)} "
                         f"(<a href='{html.escape(figure.pdf)}'>PDF</a>)</figcaption></figure>")
    parts.append("<h2>Study specification</h2>")
    spec: Any = (ctx.study or {}).get("spec")
    parts.append(f"<pre>{html.escape(json.dumps(spec, indent=2)) if spec else '(not measured from a grid)'}</pre>")
    parts.append("<h2>Provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(_provenance(ctx), indent=2, default=str))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _provenance(ctx: ReportContext) -> dict[str, Any]:
    try:
        from probe.store import ResultStore

        entries = ResultStore(ctx.store).entries()
    except Exception:
        return {}
    out: dict[str, Any] = {"entries": int(len(entries))}
    if "verified" in entries and not entries["verified"].all():  # schema-1 results: no checksums to check
        out["unverified_entries"] = (f"{int((~entries['verified'].astype(bool)).sum())} result(s) written before "
                                     "probe stored checksums: read as they are, not verified")
    for column in ("git_revision", "time", "provenance"):
        if column in entries:
            values = sorted({str(v) for v in entries[column].dropna()})
            out[column] = values if len(values) > 1 else (values[0] if values else None)
    return out
