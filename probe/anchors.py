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

A failing anchor or probe is recorded in the summary (``anchor_failures``) and never stops the others.

    from probe.anchors import measure_anchors       # usually through probe.measure(..., anchors=[...])
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from torch import nn

from probe.models.anchors import ANCHORS, make_anchor, parse_anchors

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


def single_background_run(record: dict[str, Any], out: str | Path, device: str = "cpu",
                          iterations: int | None = None) -> Path:
    """Train (or reuse) the ``single`` anchor: ``record["config"]`` with ``data.n_backgrounds = 1`` (and
    ``train.iterations = iterations`` when given) into ``out``; returns the run directory."""
    from probe.train.trainer import train

    config = copy.deepcopy(record.get("config") or {})
    config.setdefault("data", {})["n_backgrounds"] = 1
    config["name"] = f"anchor-single-{config.get('name', 'run')}"
    config["axes"] = {"anchor": "single"}
    if iterations is not None:
        config.setdefault("train", {})["iterations"] = int(iterations)
    config.pop("device", None)
    train(config, out=out, device=device, show_progress=False)
    return Path(out)


def build_anchor(name: str, record: dict[str, Any], store_dir: Path, key: str, device: str = "cpu",
                 single_iterations: int | None = None) -> nn.Module:
    """The anchor model ``name`` for the study run ``record`` (see the module docstring)."""
    model_cfg = (record.get("config") or {}).get("model") or record.get("model") or {}
    if name == "single":
        from probe.models.checkpoint import load_model

        run = single_background_run(record, store_dir / "anchors" / f"single-{key}", device, single_iterations)
        model = load_model(run, device=device)
        model.role, model.anchor = "single", "single"  # type: ignore[attr-defined]
        return model
    model = make_anchor(name, family=model_cfg.get("family"), size=model_cfg.get("size") or "tiny",
                        seed=int((record.get("config") or {}).get("seed", 0) or 0))
    return model.to(device)


def measure_anchors(names: Any, runs: list[Any], store: Any, probes: list[Any], *, root: Path,
                    splits: list[str] | None = None, device: str = "cpu", force: bool = False,
                    single_iterations: int | None = None, provenance: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """Run every probe on every anchor in ``names`` for each distinct evaluation set of ``runs`` (finished
    :class:`~probe.train.rundir.RunDir` objects) and write the results into ``store``. Returns
    ``{"computed", "skipped", "anchor_models": [ids], "anchor_failures": [text]}``."""
    from probe.probes.evaldata import eval_data_for_run
    from probe.train.catalog import catalog_row

    names = parse_anchors(names)
    summary: dict[str, Any] = {"computed": 0, "skipped": 0, "anchor_models": [], "anchor_failures": []}
    seen: set[str] = set()
    store_dir = Path(store.path).parent if hasattr(store, "path") else Path(".")
    for run in runs:
        record = run.read()
        data = eval_data_for_run(record).select(splits)
        key = eval_key(data.info)
        if key in seen:
            continue
        seen.add(key)
        reference = catalog_row(run, root)
        for name in names:
            model_id = f"anchor-{name}-{key}"
            model_cfg = (record.get("config") or {}).get("model") or {}
            info = {"role": name, "anchor": name, "eval_key": key,
                    "background": (data.info or {}).get("background"), "reference_run": reference["run_id"],
                    "family": model_cfg.get("family") if name in ("untrained", "single") else f"anchor:{name}",
                    "size": model_cfg.get("size") if name in ("untrained", "single") else "",
                    "n_backgrounds": 1 if name == "single" else None}
            todo = [p for p in probes if force or not store.has(model_id, p.name, p.params, data.info)]
            summary["skipped"] += len(probes) - len(todo)
            if not todo:
                summary["anchor_models"].append(model_id)
                continue
            try:
                model = build_anchor(name, record, store_dir, key, device, single_iterations)
            except Exception as exc:  # one failing anchor never stops the others
                summary["anchor_failures"].append(f"{model_id}: {type(exc).__name__}: {exc}")
                continue
            summary["anchor_models"].append(model_id)
            for probe in todo:
                try:
                    result = probe.run(model, data)
                except Exception as exc:
                    summary["anchor_failures"].append(f"{model_id} {probe.name}: {type(exc).__name__}: {exc}")
                    continue
                with store.transaction():
                    store.write(model_id, info, probe.name, probe.params, result, eval_info=data.info,
                                sha256="", provenance=provenance or {})
                summary["computed"] += 1
    return summary


__all__ = ["ANCHORS", "HEADLINE", "SEPARATION_RTOL", "build_anchor", "eval_key", "measure_anchors", "separates",
           "single_background_run"]
