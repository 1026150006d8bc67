"""Study-level CKA: every finished model of a grid against every other, at matching probe points.

The report reads only the store, so the model × model comparison is measured here and written under the
reserved model id :data:`STUDY_MODEL_ID` (``"_study"``) with probe name :data:`PROBE_NAME`
(``"cka_models"``): one array per evaluation split, ``cka_<split>`` with dims ``(model_a, model_b, layer)``
(see :func:`probe.probes.cka.cross_model_cka`; the model ids are the run ids used for every other result).
All models see the same inputs: the first run's evaluation set. Models of one family are compared layer by
layer (``match="name"``), mixed families at evenly spaced relative depths (``match="depth"``). The entry
has no metric rows, so :func:`probe.store.read_metrics` does not list the pseudo model::

    from probe.cross_models import measure_cross_model_cka
    measure_cross_model_cka({"n1": "models/n_backgrounds-1", "n4": "models/n_backgrounds-4"},
                            "reports/study/results.h5", params={"n_images": 24})
    read_array("reports/study/results.h5", "_study", "cka_models", "cka_ood")   # (model_a, model_b, layer)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from probe.errors import ConfigError

STUDY_MODEL_ID = "_study"
PROBE_NAME = "cka_models"
#: Parameters of the ``cka`` probe that carry over to the cross-model comparison.
SHARED_PARAMS = ("layers", "kernel", "estimator", "convention", "n_images", "batch_size", "pixels_per_image",
                 "threshold", "seed")

__all__ = ["PROBE_NAME", "STUDY_MODEL_ID", "measure_cross_model_cka"]


def _record(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path / 'run.json'}: cannot read the run record ({exc})") from exc


def measure_cross_model_cka(runs: Mapping[str, str | Path], store: Any, data: Any = None, *,
                            params: Mapping[str, Any] | None = None, splits: Sequence[str] | None = None,
                            match: str | None = None, force: bool = False, device: str = "cpu",
                            provenance: Mapping[str, Any] | None = None) -> bool:
    """Compute and store the model × model CKA of ``runs`` (``{model_id: run directory}``, ≥ 2 finished runs).

    ``store``: a :class:`probe.store.ResultStore` or its path. ``data``: the shared evaluation set (default:
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
    from probe.store import ResultStore

    if not isinstance(runs, Mapping) or len(runs) < 2:
        raise ConfigError(f"cross-model CKA needs a mapping of at least 2 model ids to run directories, got "
                          f"{len(runs) if isinstance(runs, Mapping) else type(runs).__name__}")
    if STUDY_MODEL_ID in runs:
        raise ConfigError(f"model id {STUDY_MODEL_ID!r} is reserved for study-level results")
    paths = {str(mid): Path(p) for mid, p in runs.items()}
    records = {mid: _record(p) for mid, p in paths.items()}
    probe_params = CKAProbe(**dict(params or {})).params  # validates, fills defaults
    chosen = {k: probe_params[k] for k in SHARED_PARAMS}
    if data is None:
        data = eval_data_for_run(records[next(iter(records))])
    if splits is None:  # the cka probe's own splits, those the evaluation set has (default: all)
        splits = [s for s in probe_params.get("splits") or data.splits if s in data.splits] or list(data.splits)
    names = list(splits)
    data = data.select(names)
    families = {(r.get("model") or (r.get("config") or {}).get("model") or {}).get("family")
                for r in records.values()}
    if match is None:
        match = "name" if len(families) == 1 else "depth"
    stored_params = {**chosen, "match": match, "splits": names,
                     "models": {mid: str(r.get("weights_sha256") or "") for mid, r in records.items()}}
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if not force and store.has(STUDY_MODEL_ID, PROBE_NAME, stored_params, data.info):
        return False

    from probe.probes.base import ProbeResult

    loaders = {mid: partial(load_model, path, device=device) for mid, path in paths.items()}
    kwargs = {k: v for k, v in chosen.items() if k != "layers"}
    result = ProbeResult()
    for split in names:
        result.arrays[f"cka_{split}"] = cross_model_cka(loaders, data, layers=chosen["layers"], split=split,
                                                        match=match, **kwargs)
    info = {"kind": "study", "n_models": len(paths), "models": list(paths),
            "families": sorted(str(f) for f in families)}
    with store.transaction():
        store.delete(STUDY_MODEL_ID, PROBE_NAME)  # one comparison per study: the latest set of models
        store.write(STUDY_MODEL_ID, info, PROBE_NAME, stored_params, result, eval_info=data.info,
                    provenance=provenance)
    return True
