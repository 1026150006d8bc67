"""The model info ``measure`` writes for each entry (:class:`probe.records.ModelInfo`: kind, task, fields).

``grid``: the catalog row of the run (family, size, background, n_backgrounds, seed, grid axes, final
metrics) and the measured complexity of its training backgrounds (``complexity_<measure>`` means over its
``n_backgrounds`` images, at most 64, and ``n_distinct_contents``); ``task``: the run record's, else the
decomposition of its training degradation.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def training_complexity(background: str, options_json: str, n: int, patch: int, seed: int) -> dict[str, float]:
    """Measured complexity of a run's training backgrounds (means over its ``n_backgrounds`` images)."""
    from probe.data.backgrounds import make_background
    from probe.data.complexity import score_set

    source = make_background(background, patch, seed=seed, **json.loads(options_json))
    images = source.images(min(n, 64))
    return {**{f"complexity_{k}": float(v) for k, v in score_set(images).items()},
            "n_distinct_contents": source.distinct_contents(n)}


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def grid_info(row: dict[str, Any], record: Any) -> dict[str, Any]:
    """The model info of a grid run (``row``: :func:`probe.train.catalog.catalog_row`, ``record``: its
    :class:`probe.records.RunRecord`)."""
    from probe.records import ModelInfo
    from probe.tasks import task_of_degradation

    fields = {k: (None if _isnan(v) else v) for k, v in row.items()
              if k not in ("path", "error", "status") and not isinstance(v, (dict, list))}
    try:
        fields.update(training_complexity(*record.complexity_key()))
    except Exception:  # noqa: BLE001 - complexity is a convenience column; never fail a measurement for it
        pass
    task = record.task or task_of_degradation(record.config.get("degradation"))
    return ModelInfo(kind="grid", task=task, fields=fields).to_info()


def model_info(row: dict[str, Any], record: Any) -> dict[str, Any]:
    """:func:`grid_info` for a ``run.json`` dict or a :class:`probe.records.RunRecord` (kept for callers)."""
    from probe.records import RunRecord

    return grid_info(row, record if isinstance(record, RunRecord) else RunRecord.from_dict(record))
