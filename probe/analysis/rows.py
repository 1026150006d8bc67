"""Which rows of tidy metrics are which: the models' kinds, the splits' roles, the study's task.

Kinds come from the stored model info (:class:`probe.records.ModelInfo` ``kind``; inferred only for stores
written before it, :func:`probe.records.kinds_of`). Splits: ``id`` (the training degradation), ``clean``
(no degradation), pooled labels (``all``: ddr pools every split; ``probe_set``: the shortcut score's common
probe set) and the out-of-distribution test splits (every other).
"""

from __future__ import annotations

from typing import Any

ID_SPLIT = "id"
NON_DEGRADED = {"clean"}
#: Split labels of results that pool every split (e.g. the ddr probe's "all") or serve one probe (the shortcut
#: score's common "probe_set": training rain on every source's backgrounds): not test splits.
POOLED_SPLITS = {"all", "probe_set"}


def kinds(metrics: Any) -> Any:
    """Series: each row's model kind (grid | external | anchor)."""
    from probe.records import kinds_of

    return kinds_of(metrics)


def _is(metrics: Any, kind: str) -> Any:
    import pandas as pd

    if metrics is None or not len(metrics):
        return pd.Series(False, index=getattr(metrics, "index", None), dtype=bool)
    return kinds(metrics) == kind


def is_anchor(metrics: Any) -> Any:
    """Boolean Series: rows of calibration anchors."""
    return _is(metrics, "anchor")


def without_axes(metrics: Any) -> Any:
    """Boolean Series: rows of external networks."""
    return _is(metrics, "external")


def with_axes(metrics: Any) -> Any:
    """Boolean Series: rows of the grid's trained models."""
    return _is(metrics, "grid")


def trained_rows(frame: Any) -> Any:
    """The rows of the grid's trained models (never anchors nor external networks)."""
    return frame[with_axes(frame).to_numpy()] if len(frame) else frame


def ood_split_names(splits: Any) -> list[str]:
    """The out-of-distribution test splits among ``splits``: every degraded split except ``id``."""
    return sorted(set(splits) - NON_DEGRADED - POOLED_SPLITS - {ID_SPLIT})


def study_task(metrics: Any, stored: Any = None) -> Any:
    """The study's :class:`probe.tasks.Task`: ``stored`` (a study record's), else the models' stored task."""
    from probe.tasks import study_task as task

    return task(metrics, stored)
