"""The ``shortcut`` score: one number per model, from in-distribution data only (higher = more shortcut).

A study-level probe: it reads the indicators the per-model probes stored (never an OOD split), standardises
each across the study's trained models and averages them. Nothing is fitted to OOD outcomes; the rule is
fixed here and documented in ``docs/probes.md``:

=========================  ===========================================================  ========  =====
indicator                  stored row it reads (split)                                   transform  sign
=========================  ===========================================================  ========  =====
``cka_rain_alignment``     ``cka`` ``align_gap_deep`` (id): deep layers' CKA with the     —          +
                           rain layer minus with the clean background
``attribution_on_rain``    ``attribution`` ``share_on_rain`` (id, window ``on``, only     —          +
                           with ``objective = "removed"``): attribution of what the
                           network removes, on the rain vs the background input
``residual_rain_vs_bg``    ``decomposition`` ``corr_removed_layer`` −                     —          +
                           ``corr_removed_background`` (id): the removed part follows the
                           rain rather than the content
``clean_change``           ``decomposition`` ``removed_energy`` (clean): what the         log10      −
                           network changes on a rain-free input (a content prior rewrites
                           inputs off its manifold; a rain detector idles without rain)
``deep_rain_sensitivity``  ``activations`` ``sensitivity_ratio`` (id), mean over the      log10      +
                           deepest third of the layers: a layer follows the rain more
                           than the content when > 1
=========================  ===========================================================  ========  =====

Each indicator is turned into a robust z-score over the study's trained models, z = (x − median) /
(1.4826 · MAD) (the SD when the MAD is 0; dropped when both are 0), multiplied by its sign; ``score`` = the
mean z over the indicators a model has (NaN with fewer than :data:`MIN_INDICATORS`). Models whose info has a
non-empty ``role`` (calibration anchors: identity, oracle, …) are scored with the trained models' medians and
scales but never move them. DDR separation is *not* used: the ``ddr`` probe pools the OOD splits.

Provenance of the signs (disclosed, since it matters for a score validated against OOD failure): all signs
were set from the mechanism before any study was scored, except ``clean_change``, first drafted as + ("a rain
detector fires on content edges") and flipped to − after a 5-model pilot (smooth backgrounds, older rain code,
since retrained): models trained on one background rewrote clean inputs ~100× more than those trained on 16.
The demo's validation uses freshly trained models (new rain code, all seeds), not the pilot's.

::

    from probe.shortcut import measure_shortcut, shortcut_scores
    measure_shortcut("reports/derain_complexity/results.h5")   # writes probe "shortcut", metric "score"
    shortcut_scores(read_metrics(store))                        # the same numbers as a DataFrame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import DataError
from probe.probes.base import Probe

PROBE_NAME = "shortcut"
SPLIT = "id"
MIN_INDICATORS = 2
#: indicator -> sign (+1: a larger raw value means more shortcut). Fixed a priori; see the module docstring.
SIGNS = {"cka_rain_alignment": 1, "attribution_on_rain": 1, "residual_rain_vs_bg": 1, "clean_change": -1,
         "deep_rain_sensitivity": 1}
RULE = "mean of sign * (x - median) / (1.4826 MAD) over the study's trained models; log10 for clean_change " \
       "and deep_rain_sensitivity"

__all__ = ["MIN_INDICATORS", "PROBE_NAME", "SIGNS", "Shortcut", "indicators", "measure_shortcut",
           "shortcut_scores"]


class Shortcut(Probe):
    """Registry entry of the study-level ``shortcut`` probe: ``probe measure`` scores every model of the
    store after the per-model probes ran (:func:`measure_shortcut`); it cannot run on one model alone."""

    name = PROBE_NAME
    description = "one shortcut score per model from in-distribution indicators (study-level)"
    defaults: dict[str, Any] = {}
    study_level = True

    def run(self, model: Any, data: Any) -> Any:
        raise DataError("the 'shortcut' probe is study-level: it standardises indicators across a study's "
                        "models; run `probe measure` on the grid (or probe.shortcut.measure_shortcut(store))")


def _pick(metrics: Any, probe: str, split: str, metric: str) -> Any:
    m = metrics
    return m[(m["probe"] == probe) & (m["split"] == split) & (m["metric"] == metric)]


def _per_model(frame: Any) -> Any:
    return frame.groupby("model_id")["value"].mean()


def indicators(metrics: Any) -> Any:
    """Raw indicator values (model_id × indicator, NaN where not measured) from tidy metrics
    (:func:`probe.store.read_metrics`). Only in-distribution (``id``) and ``clean`` rows are read."""
    import pandas as pd

    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=list(SIGNS))
    cols: dict[str, Any] = {}
    cols["cka_rain_alignment"] = _per_model(_pick(metrics, "cka", SPLIT, "align_gap_deep"))
    attr = _pick(metrics, "attribution", SPLIT, "share_on_rain")
    if "objective" in attr:
        attr = attr[attr["objective"].astype(str) == "removed"]
    else:  # older results: the objective is in the stored params
        attr = attr[attr["params"].astype(str).str.contains('"objective":"removed"', regex=False)]
    if "window" in attr:
        attr = attr[attr["window"].astype(str) == "on"]
    cols["attribution_on_rain"] = _per_model(attr)
    corr_r = _per_model(_pick(metrics, "decomposition", SPLIT, "corr_removed_layer"))
    corr_b = _per_model(_pick(metrics, "decomposition", SPLIT, "corr_removed_background"))
    cols["residual_rain_vs_bg"] = corr_r - corr_b
    clean = _per_model(_pick(metrics, "decomposition", "clean", "removed_energy"))
    cols["clean_change"] = np.log10(clean.clip(lower=1e-12))
    sens = _pick(metrics, "activations", SPLIT, "sensitivity_ratio")
    if len(sens) and "depth" in sens:
        sens = sens[np.isfinite(sens["value"]) & (sens["value"] > 0)]
        deep = sens.groupby("model_id")["depth"].transform(lambda d: d >= d.max() - (d.max() - d.min()) / 3)
        cols["deep_rain_sensitivity"] = np.log10(sens[deep.astype(bool)].groupby("model_id")["value"].mean())
    models = sorted(set(metrics["model_id"]))
    out = pd.DataFrame(index=pd.Index(models, name="model_id"))
    for name in SIGNS:
        series = cols.get(name)
        out[name] = series.reindex(models) if series is not None else np.nan
    return out.astype(float)


def _anchor_ids(metrics: Any) -> set[str]:
    if "role" not in metrics:
        return set()
    roles = metrics.drop_duplicates("model_id").set_index("model_id")["role"]
    return {m for m, r in roles.items() if isinstance(r, str) and r not in ("", "model", "study")}


def shortcut_scores(metrics: Any) -> Any:
    """``score`` and every indicator's raw value and z per model (DataFrame indexed by model_id).

    Columns: ``score``, ``n_indicators``, ``<indicator>`` (raw) and ``z_<indicator>``. Standardisation uses
    the non-anchor models only; an indicator with no spread over them is dropped (its z is NaN).
    """
    raw = indicators(metrics)
    anchors = _anchor_ids(metrics) if len(raw) else set()
    reference = raw.loc[[m for m in raw.index if m not in anchors]]
    out = raw.copy()
    zs = []
    for name, sign in SIGNS.items():
        ref = reference[name].dropna()
        med = float(ref.median()) if len(ref) else float("nan")
        scale = 1.4826 * float((ref - med).abs().median()) if len(ref) else 0.0
        if not scale > 0:
            scale = float(ref.std(ddof=1)) if len(ref) > 1 else 0.0
        z = sign * (raw[name] - med) / scale if scale > 0 else raw[name] * np.nan
        out[f"z_{name}"] = z
        zs.append(z)
    stacked = np.vstack([z.to_numpy() for z in zs]).T if zs else np.zeros((len(raw), 0))
    count = np.isfinite(stacked).sum(axis=1)
    with np.errstate(invalid="ignore"):
        score = np.where(count >= MIN_INDICATORS, np.nanmean(np.where(np.isfinite(stacked), stacked, np.nan),
                                                             axis=1) if len(raw) else [], np.nan)
    out["score"] = score
    out["n_indicators"] = count
    out["anchor"] = [m in anchors for m in out.index]
    return out


def measure_shortcut(store: Any, provenance: dict[str, Any] | None = None) -> int:
    """Compute :func:`shortcut_scores` from a store and write each model's result (probe ``shortcut``:
    metric rows ``score``, ``n_indicators``, ``indicator`` + ``z`` per indicator, split ``id``). The stored
    params list the rule and every scored model's checkpoint hash; older ``shortcut`` results are replaced.
    Returns the number of models scored (0 when fewer than 3 trained models have indicators). Called inside
    a transaction (as ``probe measure`` does) it reads that transaction's uncommitted results and joins its
    commit.

    ``store``: a :class:`probe.store.ResultStore` or the path of its file. Raises :class:`DataError` for a
    missing store.
    """
    from probe.probes.base import ProbeResult
    from probe.store import ResultStore

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    path = Path(store.path)
    metrics = store.metrics()  # inside the caller's transaction: its uncommitted per-model results too
    if not len(metrics) and not path.is_file():
        raise DataError(f"{path}: no result store to score (run the per-model probes first)")
    if len(metrics):
        metrics = metrics[~metrics["model_id"].astype(str).str.startswith("_")]
        metrics = metrics[metrics["probe"] != PROBE_NAME]
    scores = shortcut_scores(metrics)
    scored = scores[scores["score"].notna()]
    if int((~scored["anchor"]).sum()) < 3:
        return 0
    infos = {m: store.model_info(m) for m in scored.index}
    params = {"rule": RULE, "signs": SIGNS, "min_indicators": MIN_INDICATORS,
              "models": {m: str(infos[m].get("sha256", "")) for m in sorted(scored.index)}}
    with store.transaction():
        for model_id, row in scored.iterrows():
            info = {k: v for k, v in infos[model_id].items() if k not in ("sha256", "path")}
            result = ProbeResult()
            result.add_metric(SPLIT, "score", row["score"])
            result.add_metric(SPLIT, "n_indicators", row["n_indicators"])
            for name in SIGNS:
                result.add_metric(SPLIT, "indicator", row[name], indicator=name)
                result.add_metric(SPLIT, "z", row[f"z_{name}"], indicator=name)
            store.delete(model_id, PROBE_NAME)
            store.write(model_id, info, PROBE_NAME, params, result, sha256=str(infos[model_id].get("sha256", "")),
                        provenance=provenance, model_path=str(infos[model_id].get("path", "")) or None)
    return len(scored)
