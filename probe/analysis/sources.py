"""Which evaluation a result row comes from, and the grid's groups an external network is compared with.

An external network is measured on every evaluation set of the study (one per background source;
:func:`probe.measure.plan.study_eval_sets`), so each of its rows carries the source of its images; a grid
model's rows carry its own (its evaluation set's background). Comparing like for like = comparing rows of the
same ``source``.
"""

from __future__ import annotations

import json
from typing import Any

REAL = "real pairs"


def eval_source(eval_json: Any) -> str:
    """The background source of an evaluation description (JSON text or dict): ``"real pairs"`` for
    folders of real pairs, ``"?"`` when unknown."""
    try:
        info = json.loads(eval_json) if isinstance(eval_json, str) else dict(eval_json or {})
    except (TypeError, ValueError):
        return "?"
    if info.get("source") == "paired_folders":
        return REAL
    return str(info.get("background") or "?")


def with_source(metrics: Any) -> Any:
    """``metrics`` with a ``source`` column (:func:`eval_source` of each row's ``eval``)."""
    if metrics is None or not len(metrics) or "eval" not in metrics:
        return metrics if metrics is None or "source" in metrics else metrics.assign(source=[])
    cache: dict[str, str] = {}
    values = [cache.setdefault(e, eval_source(e)) if isinstance(e, str) else eval_source(e) for e in metrics["eval"]]
    return metrics.assign(source=values)
