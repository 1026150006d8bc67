"""Validity of the ``shortcut`` score: does a score computed without OOD data rank models by OOD failure?

Spearman ρ between each trained (grid) model's ``shortcut`` score (ID-only indicators, :mod:`probe.shortcut`)
and its OOD removal (of rain, noise or blur: the study's task), per OOD split, over all models and leaving one
background source out at a time (so a score that only separates sources shows it). 95 % bootstrap CI over
seeds (models resampled within their source × n_backgrounds cell) and a permutation p. The target of issue 12
is ρ ≤ −0.8. :func:`score_rule` reads the rule the score was computed with from the store (its stored
parameters), never from code. External networks and anchors are never part of the validation; their readings
(:func:`readings`) are percentiles on the grid's distribution (:mod:`probe.shortcut_reading`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from probe.analysis.headline import N_BOOT, N_PERM, SEED, _trained, cells
from probe.analysis.rows import kinds, ood_split_names, study_task

TARGET = -0.8


def score_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model × OOD split: score, OOD removal, background, n_backgrounds."""
    if not len(metrics) or "shortcut" not in set(metrics["probe"]):
        return pd.DataFrame()
    trained = _trained(metrics)
    score = trained[(trained["probe"] == "shortcut") & (trained["metric"] == "score")]
    score = score.groupby("model_id")["value"].mean().rename("score")
    removal_metric = study_task(metrics).removal_metric
    dec = trained[(trained["probe"] == "decomposition") & (trained["metric"] == removal_metric)]
    dec = dec[dec["split"].isin(ood_split_names(dec["split"]))]
    keep = {c: (c, "first") for c in ("background", "n_backgrounds") if c in dec}
    per = dec.groupby(["model_id", "split"], as_index=False).agg(ood_removal=("value", "mean"), **keep)
    out = per.merge(score, left_on="model_id", right_index=True).dropna(subset=["score", "ood_removal"])
    if "background" not in out:
        out["background"] = "all"
    return out


def score_validity(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                   seed: int = SEED) -> pd.DataFrame:
    """Rows: OOD split × scope (``all models`` / ``without <source>``) with ρ(score, OOD removal), CI, p."""
    from probe.stats import spearman_test

    frame = score_frame(metrics)
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for split, part in frame.groupby("split"):
        sources = sorted(part["background"].astype(str).unique())
        scopes = [("all models", part)]
        if len(sources) > 1:
            scopes += [(f"without {s}", part[part["background"].astype(str) != s]) for s in sources]
        for scope, sub in scopes:
            est = spearman_test(sub["score"].to_numpy(), sub["ood_removal"].to_numpy(), strata=cells(sub),
                                n_boot=n_boot, n_perm=n_perm, seed=seed)
            rows.append({"ood_split": split, "scope": scope, "n_models": len(sub),
                         **est.as_dict("spearman_score_vs_ood_removal"),
                         "meets_target": bool(np.isfinite(est.value) and est.value <= TARGET), "note": est.note})
    return pd.DataFrame(rows)


def indicator_validity(metrics: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                       seed: int = SEED) -> pd.DataFrame:
    """Rows: OOD split × indicator (every stored ``z``, the score's and the weight-0 diagnostics, and every
    indicator of the stored rule's ``signs`` even where no model has it) with ρ(z, OOD removal) over the
    trained models that have the indicator, CI and p, the indicator's weight in the score and its coverage
    (``n_models`` with it of ``n_trained``; ``coverage`` in words) — so a reader sees which indicators track
    OOD failure in this study, not only the one the score uses, and on how many models (a ``cem`` indicator
    exists only where ``cem`` was measured)."""
    from probe.stats import spearman_test

    frame = score_frame(metrics)
    if frame.empty:
        return pd.DataFrame()
    trained = _trained(metrics)
    z = trained[(trained["probe"] == "shortcut") & (trained["metric"] == "z")]
    if z.empty or "indicator" not in z:
        return pd.DataFrame()
    rule = score_rule(metrics)
    names = list(dict.fromkeys([*(rule.get("signs") or {}), *z["indicator"].dropna().astype(str)]))
    z = z.pivot_table(index="model_id", columns="indicator", values="value").reindex(columns=names)
    weights = rule.get("weights") or _legacy_weights()
    rows = []
    for split, part in frame.groupby("split"):
        part = part.set_index("model_id")
        strata = cells(part)
        for name in z.columns:
            x = z[name].reindex(part.index)
            ok = x.notna().to_numpy()
            est = spearman_test(x.to_numpy()[ok], part["ood_removal"].to_numpy()[ok], strata=strata[ok],
                                n_boot=n_boot, n_perm=n_perm, seed=seed)
            note = est.note if ok.any() else f"no trained model has {name} (its probe was not measured)"
            rows.append({"ood_split": split, "indicator": name, "weight": weights.get(name, 0.0),
                         "n_models": int(ok.sum()), "n_trained": len(part),
                         "coverage": f"{int(ok.sum())} of {len(part)} models",
                         **est.as_dict("spearman_z_vs_ood_removal"), "note": note})
    return pd.DataFrame(rows)


def _legacy_weights() -> dict:
    """Weights of the current rule, for stores whose scores were written before the weights were stored."""
    from probe.shortcut import WEIGHTS

    return dict(WEIGHTS)


def score_rule(metrics: pd.DataFrame) -> dict:
    """The rule the stored shortcut scores were computed with (their stored parameters: ``rule`` text,
    ``weights`` and ``signs`` per indicator; ``{}`` when no score is stored). Stores written before the
    weights were stored give the weights of rule v2 named in their ``rule`` text (attribution_on_rain 1)."""
    if metrics is None or not len(metrics) or "params" not in metrics or "shortcut" not in set(metrics["probe"]):
        return {}
    params = metrics.loc[metrics["probe"] == "shortcut", "params"].dropna()
    if params.empty:
        return {}
    try:
        stored = json.loads(params.iloc[-1])
    except (TypeError, ValueError):
        return {}
    if "weights" not in stored and str(stored.get("rule", "")).startswith("v2"):
        stored["weights"] = {"attribution_on_rain": 1.0}
    return stored


def readings(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per external network (and anchor) with a stored reading: model_id, kind, indicator, value,
    percentile, percentile_lo, percentile_hi, ci, verdict."""
    cols = ["model_id", "kind", "indicator", "value", "percentile", "percentile_lo", "percentile_hi", "ci", "verdict"]
    if metrics is None or not len(metrics) or "shortcut" not in set(metrics["probe"]):
        return pd.DataFrame(columns=cols)
    rows = metrics[(metrics["probe"] == "shortcut")
                   & metrics["metric"].isin(["percentile", "percentile_lo", "percentile_hi"])]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.assign(kind=kinds(rows).to_numpy())
    wide = rows.pivot_table(index=["model_id", "kind", "indicator", "ci", "verdict"], columns="metric",
                            values="value", aggfunc="first").reset_index()
    raw = metrics[(metrics["probe"] == "shortcut") & (metrics["metric"] == "indicator")]
    raw = raw.set_index(["model_id", "indicator"])["value"]
    wide["value"] = [raw.get((m, i), np.nan) for m, i in zip(wide["model_id"], wide["indicator"])]
    return wide[cols]
