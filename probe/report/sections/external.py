"""Your networks beside the grid (a table of the headline section), per background source: rendered from
:func:`probe.analysis.external.external_table` (each external network on every source of the study, next to
that source's grid models with the fewest and the most training backgrounds).

Rows say which evaluation the numbers come from (``synthetic`` splits of a ``source``, shared with that
source's grid models, or ``real pairs`` from folders): only rows of the same source are directly comparable.
"""

from __future__ import annotations

from probe.analysis.external import METRICS, external_table

__all__ = ["METRICS", "external_table"]
