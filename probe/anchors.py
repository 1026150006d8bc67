"""Measure calibration anchors beside a study's models (``probe measure ... --anchors identity,oracle,...``).

Anchors (:mod:`probe.models.anchors`) are measured once per distinct evaluation set of the study (runs on
``smooth`` and on ``natural`` backgrounds have different evaluation sets), with the same probes and
parameters as the study's models, and stored as models of their own:

* model id ``anchor-<name>-<eval key>`` (``eval key``: the first 8 hex digits of the evaluation set's
  :func:`probe.store.schema.entry_key`), e.g. ``anchor-oracle-3f2a9c1b``;
* model info (columns of :func:`probe.store.read_metrics` / ``read_models``): ``role`` = the anchor's name
  (identity | oracle | untrained | single; also in ``anchor``), ``eval_key``, ``background`` (the evaluation set's
  source), ``reference_run`` (the study run whose evaluation set and config it shares), ``family``, ``size``
  (for ``untrained``/``single``; ``anchor:<name>`` for the others) and ``n_backgrounds`` (1 for ``single``,
  empty otherwise). Study models have no ``role`` (read as "" / missing): anchors are the rows with a
  non-empty ``role``; compare an anchor with the study models of the same ``background`` / ``eval_key``.

``single`` is trained with the reference run's config and ``data.n_backgrounds = 1`` (same iterations,
seed and degradation) into ``<store dir>/anchors/single-<eval key>/`` (reused when finished).

Anchors are entries of ``probe measure``'s plan (:func:`probe.measure.plan.anchor_entries`): a failing anchor
or probe is stored as a failure and listed like any other, and never stops the others::

    probe.measure("trained_models/study", anchors=["identity", "oracle"])
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from torch import nn

from probe.models.anchors import ANCHORS, make_anchor

#: Headline indicators of each probe: (metric, where) with where = {"window": ...} / "deepest" (the last
#: probe point) / None (a per-split row). The anchor test checks that each separates identity from oracle.
HEADLINE: dict[str, list[tuple[str, Any]]] = {
    "generalization": [("psnr", None), ("ssim", None)],
    "decomposition": [("removal_ratio", None), ("mse_rain", None), ("mse_bg", None), ("corr_removed_layer", None)],
    "activations": [("sensitivity_ratio", "deepest"), ("probe_accuracy", "deepest")],
    "cka": [("align_clean", "deepest"), ("align_degradation", "deepest"), ("align_gap_deep", None)],
    "ddr": [("ddr_score", "deepest"), ("silhouette_background", "deepest")],
    "attribution": [("diffusion_index", {"window": "on"}), ("share_on_rain", {"window": "on"}),
                    ("share_in_mask", {"window": "on"})],
    # the shortcut score's cem diagnostics (identity: removes nothing, NaN; oracle: the removal is the rain)
    "cem": [("rain_share", {"window": "on"}), ("rain_dependence", {"window": "on"})],
}
SEPARATION_RTOL = 0.05


def separates(a: float, b: float, rtol: float = SEPARATION_RTOL) -> bool:
    """Whether two anchor values of an indicator differ: one NaN (e.g. "no attribution") and one finite, or
    both finite with ``|a − b| > rtol × max(|a|, |b|, 1e-3)``. Two NaNs never separate."""
    fa, fb = math.isfinite(a), math.isfinite(b)
    if fa != fb:
        return True
    if not fa:
        return False
    return abs(a - b) > rtol * max(abs(a), abs(b), 1e-3)


def eval_key(info: dict[str, Any]) -> str:
    """Short key of an evaluation-set description (8 hex digits)."""
    from probe.store.schema import entry_key

    return entry_key({}, info)[:8]


def _raw(record: Any) -> dict[str, Any]:
    return record.to_dict() if hasattr(record, "to_dict") else dict(record or {})


def single_background_run(record: Any, out: str | Path, device: str = "cpu",
                          iterations: int | None = None) -> Path:
    """Train (or reuse) the ``single`` anchor: ``record``'s config (a :class:`probe.records.RunRecord` or a
    ``run.json`` dict) with ``data.n_backgrounds = 1`` (and ``train.iterations = iterations`` when given) into
    ``out``; returns the run directory."""
    from probe.train.trainer import train

    config = copy.deepcopy(_raw(record).get("config") or {})
    config.setdefault("data", {})["n_backgrounds"] = 1
    config["name"] = f"anchor-single-{config.get('name', 'run')}"
    config["axes"] = {"anchor": "single"}
    if iterations is not None:
        config.setdefault("train", {})["iterations"] = int(iterations)
    config.pop("device", None)
    train(config, out=out, device=device, show_progress=False)
    return Path(out)


def build_anchor(name: str, record: Any, store_dir: Path, key: str, device: str = "cpu",
                 single_iterations: int | None = None) -> nn.Module:
    """The anchor model ``name`` for the study run ``record`` (see the module docstring)."""
    raw = _raw(record)
    model_cfg = (raw.get("config") or {}).get("model") or raw.get("model") or {}
    if name == "single":
        from probe.models.checkpoint import load_model

        run = single_background_run(raw, store_dir / "anchors" / f"single-{key}", device, single_iterations)
        model = load_model(run, device=device)
        model.role, model.anchor = "single", "single"  # type: ignore[attr-defined]
        return model
    model = make_anchor(name, family=model_cfg.get("family"), size=model_cfg.get("size") or "tiny",
                        seed=int((raw.get("config") or {}).get("seed", 0) or 0))
    return model.to(device)


def anchor_info(name: str, record: Any, eval_info: dict[str, Any], key: str, reference_run: str) -> dict[str, Any]:
    """The model info of anchor ``name`` measured on ``eval_info`` beside ``reference_run`` (module docstring)."""
    from probe.records import ModelInfo
    from probe.tasks import task_of_degradation

    raw = _raw(record)
    model_cfg = (raw.get("config") or {}).get("model") or {}
    trained = name in ("untrained", "single")
    fields = {"role": name, "anchor": name, "eval_key": key, "background": (eval_info or {}).get("background"),
              "reference_run": reference_run,
              "family": model_cfg.get("family") if trained else f"anchor:{name}",
              "size": model_cfg.get("size") if trained else "", "n_backgrounds": 1 if name == "single" else None}
    task = raw.get("task") or task_of_degradation((raw.get("config") or {}).get("degradation"))
    return ModelInfo(kind="anchor", task=task, fields=fields).to_info()


__all__ = ["ANCHORS", "HEADLINE", "SEPARATION_RTOL", "anchor_info", "build_anchor", "eval_key", "separates",
           "single_background_run"]
