"""Effect sizes: how much of the variation in rain (noise, blur) removal is background complexity, how much the
degradation?

A type-II ANOVA of an OLS model of the removal ratio, one row per trained (grid) model × degraded test split
(``id`` and every OOD split): background source, log2 ``n_backgrounds`` (background complexity), the test split
(which rain: the degradation), the training-rain range when a study varies it, and the background × rain
interactions. Partial η² per term with a 95 % bootstrap CI over seeds (whole models resampled within their
source × n cell), the F-test p and, for the model-level factors, a permutation p
(:func:`probe.stats.two_way_effects`). Pure functions; :mod:`probe.report.sections.effects` renders them.
"""

from __future__ import annotations

import numpy as np  # noqa: F401 - used by the formula (np.log2)
import pandas as pd

from probe.analysis.headline import _trained
from probe.analysis.rows import ID_SPLIT, ood_split_names, study_task

N_BOOT, N_PERM, SEED = 300, 199, 0


LABELS = {"C(background)": "background source", "np.log2(n_backgrounds)": "log2 n_backgrounds",
          "C(split)": "test rain (split)", "C(train_range)": "training-rain range"}


def _label(term: str) -> str:
    return " × ".join(LABELS.get(t, t) for t in term.split(":"))


def effect_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long table model_id × split: removal ratio with the model's factors (trained models only)."""
    removal_metric = study_task(metrics).removal_metric if len(metrics) else "removal_ratio"
    dec = metrics[(metrics["probe"] == "decomposition") & (metrics["metric"] == removal_metric)] \
        if len(metrics) else metrics
    if dec.empty or "n_backgrounds" not in dec:
        return pd.DataFrame()
    dec = dec.assign(n_backgrounds=pd.to_numeric(dec["n_backgrounds"], errors="coerce").astype(float))
    dec = _trained(dec[dec["n_backgrounds"].notna() & (dec["n_backgrounds"] > 0)])
    dec = dec[dec["split"].isin([ID_SPLIT, *ood_split_names(dec["split"])])]
    keep = [c for c in ("background", "train_range", "family") if c in dec]
    return dec.groupby(["model_id", "split"], as_index=False).agg(
        value=("value", "mean"), n_backgrounds=("n_backgrounds", "first"), **{c: (c, "first") for c in keep})


def effect_sizes(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                 seed: int = SEED) -> tuple[pd.DataFrame, str]:
    """(table, formula) of partial η² per term; an empty table when the study has no varying factor."""
    from probe.stats import two_way_effects

    frame = effect_frame(metrics)
    if frame.empty or frame["split"].nunique() < 2:
        return pd.DataFrame(), ""
    model_terms = []
    if "background" in frame and frame["background"].nunique() > 1:
        model_terms.append("C(background)")
    if frame["n_backgrounds"].nunique() > 1:
        model_terms.append("np.log2(n_backgrounds)")
    if "train_range" in frame and frame["train_range"].astype(str).nunique() > 1:
        frame["train_range"] = frame["train_range"].astype(str)
        model_terms.append("C(train_range)")
    if not model_terms:
        return pd.DataFrame(), ""
    formula = "value ~ " + " + ".join(model_terms + ["C(split)"] + [f"{t}:C(split)" for t in model_terms])
    strata = [c for c in ("background", "n_backgrounds", "train_range") if c in frame]
    permute = [c for c in ("background", "n_backgrounds", "train_range") if any(c in t for t in model_terms)]
    table = two_way_effects(frame, formula, "model_id", strata, permute=permute, n_boot=n_boot, n_perm=n_perm,
                            seed=seed)
    table.insert(0, "effect", table["term"].map(_label))
    return table, formula
