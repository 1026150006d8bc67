"""Study-level CKA: every finished model of a grid against every other, at matching probe points.

A study probe (:class:`probe.probes.study.StudyProbe`, registry name ``cka_models``, brought along by ``cka``
on a grid). The report reads only stores, so the model × model comparison is measured here and written to the
study's own store (:func:`probe.records.study_store_path`: ``study_results.h5`` beside ``results.h5``), entry id
= the study's name, probe :data:`PROBE_NAME`: one array per evaluation split, ``cka_<split>`` with dims
``(model_a, model_b, layer)`` (see :func:`probe.probes.cka.cross_model_cka`; the model ids are the run ids used
for every other result). All models see the same inputs: the first run's evaluation set. Models of one family
are compared layer by layer (``match="name"``), mixed families at evenly spaced relative depths
(``match="depth"``)::

    from probe.cross_models import measure_cross_model_cka
    measure_cross_model_cka({"n1": "models/n_backgrounds-1", "n4": "models/n_backgrounds-4"},
                            "reports/study/results.h5", params={"n_images": 24}, study="study")
    read_array("reports/study/study_results.h5", "study", "cka_models", "cka_ood")   # (model_a, model_b, layer)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.probes.study import StudyContext, StudyEntry, StudyProbe

PROBE_NAME = "cka_models"
#: Parameters of the ``cka`` probe that carry over to the cross-model comparison.
SHARED_PARAMS = ("layers", "kernel", "estimator", "convention", "n_images", "batch_size", "pixels_per_image",
                 "threshold", "seed")

__all__ = ["PROBE_NAME", "CrossModelCKA", "measure_cross_model_cka", "study_store"]


def study_store(store: Any) -> Any:
    """The :class:`probe.store.ResultStore` of study-level results beside ``store`` (a store or its path)."""
    from probe.records import study_store_path
    from probe.store import ResultStore

    return ResultStore(study_store_path(getattr(store, "path", store)))


class CrossModelCKA(StudyProbe):
    """Model × model CKA of a study's grid models (see the module docstring)."""

    name = PROBE_NAME
    description = "model x model CKA at matching probe points over a grid's models (study-level)"
    defaults: dict[str, Any] = {}
    inputs = ()
    implied_by = ("cka",)
    kinds = ("grid",)

    def run(self, entries: list[StudyEntry], store: Any = None, context: StudyContext | None = None) -> Any:
        """Compare the grid entries' models (≥ 2) and store the result; returns ``{"computed", "models"}``."""
        if self.per_model_call(entries, store):
            return super().run(entries)
        context = context or StudyContext(name="study", study_store=study_store(store))
        grid = [e for e in entries if e.kind in self.kinds and e.record is not None]
        if len(grid) < 2:
            return {"computed": False, "reason": f"{len(grid)} grid model(s) measured; needs 2"}
        computed = measure_cross_model_cka(
            {e.model_id: e.path for e in grid}, store, grid[0].evals[0] if grid[0].evals else None,
            params=context.probe_params.get("cka", {}), force=context.force, device=context.device,
            provenance=context.provenance, study=context.name, loaders={e.model_id: e.load for e in grid},
            records={e.model_id: e.record for e in grid})
        return {"computed": computed, "models": len(grid)}


def measure_cross_model_cka(runs: Mapping[str, str | Path], store: Any, data: Any = None, *,
                            params: Mapping[str, Any] | None = None, splits: Sequence[str] | None = None,
                            match: str | None = None, force: bool = False, device: str = "cpu",
                            provenance: Mapping[str, Any] | None = None, study: str | None = None,
                            loaders: Mapping[str, Any] | None = None, records: Mapping[str, Any] | None = None
                            ) -> bool:
    """Compute and store the model × model CKA of ``runs`` (``{model_id: run directory}``, ≥ 2 finished runs).

    ``store``: the study's :class:`probe.store.ResultStore` (or its path); the comparison is written to the
    study store beside it (:func:`study_store`) under the entry id ``study`` (default: the store's folder name).
    ``loaders`` / ``records``: already built model loaders and :class:`probe.records.RunRecord` per id.
    ``data``: the shared evaluation set (default:
    the first run's, :func:`probe.probes.evaldata.eval_data_for_run`). ``params``: ``cka`` probe parameters
    (kernel, convention, n_images, batch_size, layers, …; its ``splits`` picks the splits unless ``splits``
    is given). ``match``: ``"name"`` / ``"depth"``, default by whether all runs share one family. Models are
    loaded one at a time. The stored parameters include every model id and checkpoint hash, so adding or
    retraining a model recomputes; an older comparison is replaced. Returns False when the same comparison
    was already stored (and not ``force``), True when it was computed.
    """
    from probe.models.checkpoint import load_model
    from probe.probes.cka import CKAProbe, cross_model_cka
    from probe.probes.evaldata import eval_data_for_run
    from probe.records import RunRecord

    if not isinstance(runs, Mapping) or len(runs) < 2:
        raise ConfigError(f"cross-model CKA needs a mapping of at least 2 model ids to run directories, got "
                          f"{len(runs) if isinstance(runs, Mapping) else type(runs).__name__}")
    paths = {str(mid): Path(p) for mid, p in runs.items()}
    records = {mid: (records or {}).get(mid) or RunRecord.load(p) for mid, p in paths.items()}
    probe_params = CKAProbe(**dict(params or {})).params  # validates, fills defaults
    chosen = {k: probe_params[k] for k in SHARED_PARAMS}
    if data is None:
        data = eval_data_for_run(records[next(iter(records))])
    if splits is None:  # the cka probe's own splits, those the evaluation set has (default: all)
        splits = [s for s in probe_params.get("splits") or data.splits if s in data.splits] or list(data.splits)
    names = list(splits)
    data = data.select(names)
    families = {r.family for r in records.values()}
    if match is None:
        match = "name" if len(families) == 1 else "depth"
    stored_params = {**chosen, "match": match, "splits": names,
                     "models": {mid: r.weights_sha256 for mid, r in records.items()}}
    target = study_store(store)
    study_id = study or Path(getattr(store, "path", store)).parent.name or "study"
    if not force and target.has(study_id, PROBE_NAME, stored_params, data.info):
        return False

    from probe.probes.base import ProbeResult

    loaders = dict(loaders or {}) or {mid: partial(load_model, path, device=device) for mid, path in paths.items()}
    kwargs = {k: v for k, v in chosen.items() if k != "layers"}
    result = ProbeResult()
    for split in names:
        result.arrays[f"cka_{split}"] = cross_model_cka(loaders, data, layers=chosen["layers"], split=split,
                                                        match=match, **kwargs)
    info = {"study": study_id, "n_models": len(paths), "models": list(paths),
            "families": sorted(str(f) for f in families)}
    with target.transaction():
        target.delete(study_id, PROBE_NAME)  # one comparison per study: the latest set of models
        target.write(study_id, info, PROBE_NAME, stored_params, result, eval_info=data.info,
                     provenance=provenance)
    return True
