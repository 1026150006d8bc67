"""Effect-sizes section: renders :func:`probe.analysis.effects.effect_sizes` (partial η² of background
complexity and the degradation on removal, with CIs).
"""

from __future__ import annotations

import numpy as np

from probe.analysis.effects import N_BOOT, N_PERM, SEED, effect_frame, effect_sizes  # noqa: F401 - re-exported
from probe.report.context import ReportContext, Section, Table


def effects(ctx: ReportContext) -> Section | None:
    table, formula = effect_sizes(ctx.metrics)
    if table.empty:
        return None
    top = table.sort_values("partial_eta_sq", ascending=False).iloc[0]
    noun = ctx.task.noun
    text = (f"Partial η² of each term of the model {formula} (removal ratio per model and test split; type-II "
            f"ANOVA). Background complexity = source and log2 n_backgrounds; degradation = the test {noun} "
            "(ID vs each unseen family). 95% CI: bootstrap over seeds; p_F: F test; p_perm: the factor "
            f"shuffled across models. Largest effect: {top['effect']} (η² = {top['partial_eta_sq']:.2f}).")
    if table["ci_low"].isna().all():
        text += " No CIs: the study has one model per cell."
    shown = table.drop(columns=["note"]).copy()
    if noun != "rain":
        shown["effect"] = shown["effect"].str.replace("rain", noun)
    for col in ("partial_eta_sq", "ci_low", "ci_high"):
        shown[col] = shown[col].map(lambda v: round(float(v), 3) if np.isfinite(v) else v)
    return Section("Effect sizes: background complexity vs degradation", text=text,
                   tables=[Table("effect_sizes", "Partial η² with 95% CI", shown, na_note=(
                       "p_perm is computed only for the main effect of a factor set per model (background source, "
                       "n_backgrounds, training range): the test split and interactions get the F test alone; "
                       "a blank CI: no bootstrap CI (e.g. one model per cell: no seeds to resample)."))])
