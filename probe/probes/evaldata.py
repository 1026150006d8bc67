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
    """The JSON description that identifies an evaluation set (stored with every result):
    :meth:`probe.records.EvalSpec.from_config` (the one copy of the defaults)."""
    from probe.records import EvalSpec

    return EvalSpec.from_config(config).with_images(n_images).to_dict()


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


def eval_data_for_run(run: Any, n_images: int | None = None) -> EvalData:
    """The evaluation set of a run: a run directory, a ``run.json`` dict or a :class:`probe.records.RunRecord`
    (its stored, resolved ``eval``; else resolved from its config); cached per description."""
    from probe.records import RunRecord

    if isinstance(run, dict):
        run = RunRecord.from_dict(run)
    elif not isinstance(run, RunRecord):
        run = RunRecord.load(Path(run))
    return cached_eval_data(run.eval_spec.with_images(n_images).to_dict())
