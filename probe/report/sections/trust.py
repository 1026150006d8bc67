""""How far to trust these numbers": renders :mod:`probe.analysis.trust` (replication, calibration anchors,
data caveats) and the score's validity (:mod:`probe.analysis.validity`).
"""

from __future__ import annotations

import pandas as pd

from probe.analysis.trust import INDICATORS, anchor_table, indicators, replication, separates  # noqa: F401
from probe.report.context import ReportContext, Section, Table


def trust(ctx: ReportContext) -> Section | None:
    from probe.analysis.headline import complexity_numbers, headline_numbers
    from probe.analysis.validity import score_validity
    from probe.report.sections.headline import complexity_verdict, verdict
    from probe.report.sections.shortcut import validity_text

    if ctx.metrics.empty:
        return None
    text, counts = replication(ctx.metrics)
    section = Section("How far to trust these numbers", text=text)
    both = ctx.metrics if ctx.anchors is None or not len(ctx.anchors) else \
        pd.concat([ctx.metrics, ctx.anchors], ignore_index=True)
    anchors = anchor_table(both)
    if anchors.empty:
        section.text += ("Calibration anchors (identity, oracle, untrained, single-background networks) were not "
                         "measured for this study, so no indicator here is checked against networks of known "
                         "behaviour. ")
    else:
        bad = sorted(set(anchors.loc[anchors["informative"] == "NO", "indicator"]))
        section.text += ("Anchors: networks of known behaviour measured like the study's models. "
                         + (f"Uninformative on this study (identity ≈ oracle): {', '.join(bad)}. " if bad else
                            "Every indicator shown separates identity from oracle. "))
        section.tables.append(Table("anchors", "Calibration anchors vs the trained models", anchors.round(4)))
    overall = complexity_numbers(ctx.metrics)
    if not overall.empty:
        section.text += "Headline (background complexity): " + complexity_verdict(overall) + " "
    head = headline_numbers(ctx.metrics)
    if not head.empty:
        section.text += "Within each source (n_backgrounds): " + verdict(head) + " "
    section.text += "Shortcut score: " + validity_text(score_validity(ctx.metrics)) + " "
    section.text += ("Indicators computed from OOD inputs (the ddr probe pools every split) are not used by the "
                     "shortcut score.")
    if not counts.empty:
        section.tables.append(Table("replication", "Trained models per cell", counts))
    return section
