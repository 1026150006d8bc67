"""Report sections: one file each, one line in ``SECTIONS``; a section whose probe has no results is skipped.

A section is a function ``(ctx: ReportContext) -> Section | None``.
"""

from __future__ import annotations

from probe.registry import Registry

SECTIONS = Registry(
    "report section",
    lazy={
        "trust": "probe.report.sections.trust:trust",
        "headline": "probe.report.sections.headline:headline",
        "effects": "probe.report.sections.effects:effects",
        "shortcut": "probe.report.sections.shortcut:shortcut",
        "remedies": "probe.report.sections.remedies:remedies",
        "curves": "probe.report.sections.curves:curves",
        "decomposition_bars": "probe.report.sections.bars:decomposition_bars",
        "examples": "probe.report.sections.examples:examples",
        "families": "probe.report.sections.families:families",
        "representation": "probe.report.sections.representation:representation",
        "attribution": "probe.report.sections.attribution:attribution",
        "failures": "probe.report.sections.failures:failures",
    },
)

#: Order of sections in the report.
ORDER = ["failures", "headline", "trust", "effects", "shortcut", "remedies", "curves", "decomposition_bars",
         "examples", "families", "representation", "attribution"]
