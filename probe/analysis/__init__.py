"""Analysis apart from rendering: pure functions from stored records and tidy metrics to the numbers a report
shows — no figures, no prose rewriting, no models.

=====================  =============================================================================
``sources``            which evaluation (background source / real pairs) a row comes from
``headline``           the headline statistics: Spearman ρ with bootstrap CIs and permutation p
``validity``           the shortcut score's validity: ρ(score, OOD removal), per indicator
``effects``            effect sizes of n_backgrounds on OOD removal per source, with CIs
``trust``              calibration-anchor checks (identity / oracle separate each indicator)
``external``           external networks beside the grid, per source; their shortcut readings
``ntrend``             the n_backgrounds trend of a study (headline figure)
=====================  =============================================================================

Inputs: :func:`probe.store.read_metrics` frames (and :class:`probe.records` records); outputs: DataFrames and
dicts. :mod:`probe.report.sections` only render what these return.
"""
