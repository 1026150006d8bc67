"""Build the fixed evaluation set of a run from its recorded config (held-out backgrounds, declared splits).

::

    from probe.probes.evaldata import eval_data_for_run
    data = eval_data_for_run("trained_models/derain_complexity/<cell>")
    list(data.splits)          # ['id', 'ood', ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.probes.base import EvalData


def eval_info(config: dict[str, Any], n_images: int | None = None) -> dict[str, Any]:
    """The JSON description that identifies an evaluation set (stored with every result)."""
    from probe.data.paired import evaluation_info

    info = evaluation_info(config)
    if n_images:
        info["n_images"] = int(n_images)
    return info


def eval_data_from_info(info: dict[str, Any]) -> EvalData:
    from probe.data.degradations import make_degradation
    from probe.data.paired import evaluation_set

    splits = evaluation_set(**info)
    clean = next(iter(splits.values())).clean
    return EvalData(splits=splits, degradations={k: make_degradation(v) for k, v in info["splits"].items()},
                    alt_clean=clean.roll(1, dims=0), info=info, seed=info["seed"])


_CACHE: dict[str, EvalData] = {}


def cached_eval_data(info: dict[str, Any]) -> EvalData:
    """:func:`eval_data_from_info`, cached per description (a study's runs mostly share one)."""
    key = json.dumps(info, sort_keys=True)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = eval_data_from_info(info)
    return _CACHE[key]


def eval_data_for_run(run: str | Path | dict[str, Any], n_images: int | None = None) -> EvalData:
    """The evaluation set of a run directory (or of a ``run.json`` record); cached per description."""
    if not isinstance(run, dict):
        run = json.loads((Path(run) / "run.json").read_text(encoding="utf-8"))
    return cached_eval_data(eval_info(run.get("config") or {}, n_images))
