"""The ``shortcut`` score: one number per model, from in-distribution rain only (higher = more shortcut).

A study-level probe. Rule (version 2, see "Provenance" below): the score is the **share of the network's
removal attributed to the rain input** — component attribution of the removed part, f(B, R) = removed(B + βR)
attributed to B and R separately (integrated gradients, ``attribution`` ``share_on_rain`` with
``objective = "removed"``, window ``on``) — measured on the study's **probe set**: the *training* rain (the
``id`` split's degradation, never an OOD one) on one common set of held-out backgrounds pooled from every
background source of the study (``mixture``, equal weights). A network that learned the content reconstructs
B and its removal depends on B (low share); one that learned the rain detects R (high share). The share is
turned into a robust z-score over the study's trained models, z = (x − median) / (1.4826 · MAD) (the SD when
the MAD is 0); ``score`` = the weighted mean z over :data:`WEIGHTS`.

More indicators are computed, standardised and stored beside it (``z`` rows) as diagnostics, with
weight 0:

=========================  ===========================================================  ========  =====
indicator                  stored row it reads (split)                                   transform  sign
=========================  ===========================================================  ========  =====
``attribution_on_rain``    ``attribution`` ``share_on_rain`` (``probe_set``; ``id`` for   —          +
                           a model without probe-set rows, e.g. an anchor)  — weight 1
``cka_rain_alignment``     ``cka`` ``align_gap_deep`` (id): deep layers' CKA with the     —          +
                           rain layer minus with the clean background
``residual_rain_vs_bg``    ``decomposition`` ``corr_removed_layer`` −                     —          +
                           ``corr_removed_background`` (id)
``clean_change``           ``decomposition`` ``removed_energy`` (clean)                   log10      −
``deep_rain_sensitivity``  ``activations`` ``sensitivity_ratio`` (id), mean over the      log10      +
                           deepest third of the layers
=========================  ===========================================================  ========  =====

Two more diagnostics (weight 0) come from causal effect maps (:mod:`probe.probes.cem`, split ``id``, window
``on``): ``cem_rain_share`` = ``cem`` ``rain_share`` (sign +: the removal depends on the rain) and
``cem_background_dependence`` = ``cem`` ``background_dependence`` (sign −: a content learner's removal depends
on the background). They exist only where the store holds ``cem`` results; a model without one has NaN (the
validation lists how many models each indicator covers). Adding or removing ``cem`` rows never moves the score.

Why only the first counts: ``residual_rain_vs_bg`` and ``clean_change`` cannot tell the two strategies apart
by construction — a perfect rain remover of either kind removes exactly βR (correlation 1 with R) and leaves
a clean input untouched (the anchors table marks "change on clean input" uninformative). CKA alignment and
deep sensitivity describe what the features *encode* (a rain remover must encode the background to know where
rain is not), not what the removal *depends on*; measured on each model's own backgrounds they are also set
by the data (CKA with a smooth background has little to align with).

Provenance (disclosed, since the score is validated against OOD failure): rule version 1 averaged all five
indicators with weight 1, each on the model's own ``id`` backgrounds. On the default study (27 models:
smooth, dead leaves and natural backgrounds × 3 n × 3 seeds) it ranked models the wrong way (ρ(score, OOD
removal) = +0.28 on streaks, +0.33 on particles); per indicator, only the attribution share ranked them the
right way (−0.78 / −0.86 on own backgrounds, −0.85 / −0.87 on the common probe set), the others +0.18 to
+0.83 across sources. Version 2 was chosen after that run, which shares 18 models with the shipped demo; its
held-out check (``analyses/derain_complexity_holdout.toml``, 18 freshly trained models) gave ρ = −0.90 and
−0.92. The report prints every indicator's own ρ so a reader sees the choice.

Models whose info has a non-empty ``role`` (calibration anchors: identity, oracle, …) and external networks
(model info ``kind = "external"``) are scored with the grid's trained models' medians and scales but never move
them. An external network (or an anchor) also gets a **reading** (:func:`reading`): its weighted indicator as a
percentile of the grid's trained models (mid-rank, 0–100), a 95 % bootstrap CI over its images (the
per-image shares of its probe-set attribution, 2000 resamples, seed 0), the anchors' percentiles beside it and
a verdict in plain words; stored as metric rows ``percentile``, ``percentile_lo``, ``percentile_hi`` (with
``verdict`` text) of probe ``shortcut``. DDR separation is *not* used: the ``ddr`` probe
pools the OOD splits.

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
from probe.probes.study import StudyContext, StudyEntry, StudyProbe

PROBE_NAME = "shortcut"
SPLIT = "id"
#: the split of the common probe set (training rain on the study's pooled background sources)
PROBE_SET_SPLIT = "probe_set"
#: weighted indicators a model needs for a score
MIN_INDICATORS = 1
#: indicator -> sign (+1: a larger raw value means more shortcut).
SIGNS = {"cka_rain_alignment": 1, "attribution_on_rain": 1, "residual_rain_vs_bg": 1, "clean_change": -1,
         "deep_rain_sensitivity": 1, "cem_rain_share": 1, "cem_background_dependence": -1}
#: CEM indicator -> the ``cem`` metric it reads (split ``id``, window :data:`CEM_WINDOW`)
CEM_METRICS = {"cem_rain_share": "rain_share", "cem_background_dependence": "background_dependence"}
CEM_WINDOW = "on"
#: indicator -> weight in the score (rule version 2; the others are stored diagnostics)
WEIGHTS = {"attribution_on_rain": 1.0}
RULE = "v2: weighted mean of sign * (x - median) / (1.4826 MAD) over the study's trained models; weights " \
       "attribution_on_rain 1 (probe set), others 0 (diagnostics)"

__all__ = ["CEM_METRICS", "CEM_WINDOW", "MIN_INDICATORS", "PROBE_NAME", "PROBE_SET_SPLIT", "SIGNS", "WEIGHTS",
           "Shortcut", "indicators", "measure_shortcut", "probe_set_info", "probe_set_params", "probe_set_sources",
           "shortcut_scores"]


class Shortcut(StudyProbe):
    """Registry entry of the study-level ``shortcut`` probe: ``probe measure`` runs the probe-set attribution
    on every entry (:meth:`extra`) with the per-model probes, then scores every model of the store
    (:func:`measure_shortcut`); it cannot run on one model alone."""

    name = PROBE_NAME
    description = "one shortcut score per model from in-distribution indicators (study-level)"
    defaults: dict[str, Any] = {}
    inputs = ("attribution", "cka", "decomposition", "activations", "cem")
    kinds = ("grid", "external", "anchor")
    reading_tasks = ("rain",)  # validated on deraining only (docs/results/)

    def extra(self, entry: StudyEntry, configs: list[dict[str, Any]], probe_params: dict[str, Any]) -> list:
        """The attribution on the study's common probe set (training rain on every source) for a grid model
        (its own config) or an external network (the study's first config); none for anchors."""
        from probe.probes import PROBES
        from probe.probes.evaldata import cached_eval_data

        if entry.kind == "anchor" or not configs:
            return []
        config = entry.record.config if entry.record is not None else configs[0]
        probe = PROBES.get("attribution")(**probe_set_params(probe_params.get("attribution")))
        return [(probe, cached_eval_data(probe_set_info(config, probe_set_sources(configs))))]

    def run(self, entries: Any, store: Any = None, context: StudyContext | None = None) -> Any:
        """Score every model of ``store`` (see the module docstring); returns the number scored."""
        if self.per_model_call(entries, store):
            return super().run(entries)
        if context is not None and not (context.computed or context.force) and _has_probe(store, PROBE_NAME):
            return 0  # nothing new measured: the stored scores stand
        return measure_shortcut(store, provenance=context.provenance if context else None,
                                images={e.model_id: e.results.get("attribution") for e in entries
                                        if getattr(e, "results", None)})


def _has_probe(store: Any, probe: str) -> bool:
    entries = store.entries()
    return bool(len(entries)) and bool((entries["probe"] == probe).any())


def _pick(metrics: Any, probe: str, split: str, metric: str) -> Any:
    m = metrics
    return m[(m["probe"] == probe) & (m["split"] == split) & (m["metric"] == metric)]


def _per_model(frame: Any) -> Any:
    return frame.groupby("model_id")["value"].mean()


def indicators(metrics: Any) -> Any:
    """Raw indicator values (model_id × indicator, NaN where not measured) from tidy metrics
    (:func:`probe.store.read_metrics`). Only in-distribution (``id``, ``probe_set``) and ``clean`` rows are
    read."""
    import pandas as pd

    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=list(SIGNS))
    cols: dict[str, Any] = {}
    cols["cka_rain_alignment"] = _per_model(_pick(metrics, "cka", SPLIT, "align_gap_deep"))
    attr = metrics[(metrics["probe"] == "attribution") & (metrics["metric"] == "share_on_rain")
                   & metrics["split"].isin([SPLIT, PROBE_SET_SPLIT])]
    if "objective" in attr:
        attr = attr[attr["objective"].astype(str) == "removed"]
    else:  # older results: the objective is in the stored params
        attr = attr[attr["params"].astype(str).str.contains('"objective":"removed"', regex=False)]
    if "window" in attr:
        attr = attr[attr["window"].astype(str) == "on"]
    on_set = set(attr.loc[attr["split"] == PROBE_SET_SPLIT, "model_id"])  # the probe set wins per model
    attr = attr[(attr["split"] == PROBE_SET_SPLIT) | ~attr["model_id"].isin(on_set)]
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
    cols.update(_cem_indicators(metrics))
    models = sorted(set(metrics["model_id"]))
    out = pd.DataFrame(index=pd.Index(models, name="model_id"))
    for name in SIGNS:
        series = cols.get(name)
        out[name] = series.reindex(models) if series is not None else np.nan
    return out.astype(float)


def _cem_indicators(metrics: Any) -> dict[str, Any]:
    """The ``cem`` indicators per model (:data:`CEM_METRICS`, split ``id``, window :data:`CEM_WINDOW`); none
    for a store without ``cem`` rows. A NaN row (a network that removes nothing) stays NaN."""
    cem = metrics[(metrics["probe"] == "cem") & (metrics["split"] == SPLIT)]
    if cem.empty:
        return {}
    if "window" in cem:
        cem = cem[cem["window"].astype(str) == CEM_WINDOW]
    return {name: _per_model(cem[cem["metric"] == metric]) for name, metric in CEM_METRICS.items()}


def probe_set_sources(configs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Background source -> options of the study's runs (their training configs; ``run.json`` dicts with a
    ``config`` key are accepted too), in first-seen order; a source used with several option sets keeps the
    first (e.g. a ``complexity`` axis: the first value)."""
    sources: dict[str, dict[str, Any]] = {}
    for config in configs:
        config = config.get("config", config) if isinstance(config, dict) else getattr(config, "config", {})
        data = (config or {}).get("data") or {}
        if data.get("background"):
            sources.setdefault(str(data["background"]), dict(data.get("background_options") or {}))
    return sources


def probe_set_info(config: dict[str, Any], sources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evaluation description (:func:`probe.data.paired.evaluation_info` keys) of the study's common probe
    set for one run: its training rain (the ``id`` split's spec, else its training degradation) as the one
    split :data:`PROBE_SET_SPLIT`, on held-out backgrounds of every source in ``sources`` (``mixture`` with
    equal weights; the source itself when there is one), with the run's image count, patch and seed. Every run
    of a study with the same evaluation settings gets the same images. Raises ``KeyError`` for an empty
    ``sources``."""
    from probe.data.paired import evaluation_info

    if not sources:
        raise KeyError("no background sources")
    info = evaluation_info(config)
    rain = info["splits"].get(SPLIT) or config.get("degradation") or next(iter(info["splits"].values()))
    if len(sources) == 1:
        background, options = next(iter(sources.items()))
    else:
        names = sorted(sources)
        background = "mixture"
        options = {"sources": names, "weights": [1.0] * len(names)}
        extra = {name: sources[name] for name in names if sources[name]}
        if extra:
            options["options"] = extra
    return {**info, "background": background, "background_options": options, "splits": {PROBE_SET_SPLIT: rain}}


def probe_set_params(study_params: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the probe-set ``attribution`` run: the study's own (``probe_params.attribution``) with
    the removed-part objective the indicator needs and every split of the probe set."""
    return {**(study_params or {}), "objective": "removed", "splits": None}


def _anchor_ids(metrics: Any) -> set[str]:
    """Models that never move the standardisation: anchors and external networks (kind != grid)."""
    from probe.records import kinds_of

    firsts = metrics.drop_duplicates("model_id")
    return set(firsts.loc[(kinds_of(firsts) != "grid").to_numpy(), "model_id"])


def shortcut_scores(metrics: Any) -> Any:
    """``score`` and every indicator's raw value and z per model (DataFrame indexed by model_id).

    Columns: ``score`` (weighted mean z over :data:`WEIGHTS`), ``n_indicators`` (weighted indicators the model
    has), ``<indicator>`` (raw) and ``z_<indicator>`` for every indicator of :data:`SIGNS`. Standardisation
    uses the non-anchor models only; an indicator with no spread over them is dropped (its z is NaN).
    """
    raw = indicators(metrics)
    anchors = _anchor_ids(metrics) if len(raw) else set()
    reference = raw.loc[[m for m in raw.index if m not in anchors]]
    out = raw.copy()
    for name, sign in SIGNS.items():
        ref = reference[name].dropna()
        med = float(ref.median()) if len(ref) else float("nan")
        scale = 1.4826 * float((ref - med).abs().median()) if len(ref) else 0.0
        if not scale > 0:
            scale = float(ref.std(ddof=1)) if len(ref) > 1 else 0.0
        z = sign * (raw[name] - med) / scale if scale > 0 else raw[name] * np.nan
        out[f"z_{name}"] = z
    weighted = [f"z_{name}" for name in SIGNS if WEIGHTS.get(name, 0.0)]
    z = out[weighted].to_numpy(dtype=float) if len(raw) else np.zeros((0, len(weighted)))
    w = np.array([WEIGHTS[name[2:]] for name in weighted], dtype=float)
    have = np.isfinite(z)
    count = have.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(have, z, 0.0) @ w / (have @ w)
    out["score"] = np.where(count >= MIN_INDICATORS, score, np.nan)
    out["n_indicators"] = count
    out["anchor"] = [m in anchors for m in out.index]
    return out


def measure_shortcut(store: Any, provenance: dict[str, Any] | None = None, images: dict[str, Any] | None = None
                     ) -> int:
    """Compute :func:`shortcut_scores` from a store and write each model's result (probe ``shortcut``:
    metric rows ``score``, ``n_indicators``, ``indicator`` + ``z`` per indicator, split ``id``). The stored
    params list the rule and every scored model's checkpoint hash; older ``shortcut`` results are replaced.
    Returns the number of models scored (0 when fewer than 3 trained models have indicators). Called inside
    a transaction (as ``probe measure`` does) it reads that transaction's uncommitted results and joins its
    commit.

    ``store``: a :class:`probe.store.ResultStore` or the path of its file. ``images``: model id → the
    probe-set attribution result computed in this call (its per-image shares give the reading's CI; others
    are read from the committed store). Raises :class:`DataError` for a missing store.
    """
    from probe.probes.base import ProbeResult
    from probe.shortcut_reading import reading, write_reading
    from probe.store import ResultStore

    store = store if isinstance(store, ResultStore) else ResultStore(store)
    path = Path(store.path)
    metrics = store.metrics()  # inside the caller's transaction: its uncommitted per-model results too
    if not len(metrics) and not path.is_file():
        raise DataError(f"{path}: no result store to score (run the per-model probes first)")
    if len(metrics):
        metrics = metrics[metrics["probe"] != PROBE_NAME]
    scores = shortcut_scores(metrics)
    scored = scores[scores["score"].notna()]
    if int((~scored["anchor"]).sum()) < 3:
        return 0
    infos = {m: store.model_info(m) for m in scored.index}
    params = {"rule": RULE, "signs": SIGNS, "weights": WEIGHTS, "min_indicators": MIN_INDICATORS,
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
            if row["anchor"]:  # external networks and anchors: placed on the grid's distribution
                write_reading(result, reading(model_id, scores, store, (images or {}).get(model_id),
                                                name=next(iter(WEIGHTS)), split=PROBE_SET_SPLIT))
            store.delete(model_id, PROBE_NAME)
            store.write(model_id, info, PROBE_NAME, params, result, sha256=str(infos[model_id].get("sha256", "")),
                        provenance=provenance, model_path=str(infos[model_id].get("path", "")) or None)
    return len(scored)
