"""``ModelInfo``: what the store keeps about one measured model — its kind, task and provenance.

``kind`` is ``grid`` (a model trained by the study's grid), ``external`` (a network of your own, measured
beside the grid) or ``anchor`` (a calibration anchor: identity, oracle, …; ``role`` names it). ``task`` is the
decomposition of the degradation it was trained on or evaluated for (rain | noise | blur). ``output_choice``
records which output of a multi-output network was measured and why (filled by the loader of external
networks; empty otherwise). Every other key (family, size, background, n_backgrounds, seed, grid axes,
complexity, …) is kept in ``fields``. :meth:`to_info` is the flat dict written as the store's model info (and
so columns of :func:`probe.store.read_metrics`); :meth:`from_info` reads one back — also from stores written
before model infos had a ``kind`` (then the kind is read from ``role`` / ``external`` / ``n_backgrounds``,
the one place where that is inferred)::

    info = ModelInfo(kind="external", task="rain", fields={"family": "MyNet", "model_name": "MyNet v2"})
    store.write(model_id, info.to_info(), ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from probe.records.base import RecordError

KINDS = ("grid", "external", "anchor")
#: model-info schema (the ``info_schema`` key); 0 = written before ``kind`` existed
INFO_SCHEMA = 1


@dataclass
class ModelInfo:
    kind: str
    task: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    output_choice: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecordError(f"model info: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def to_info(self) -> dict[str, Any]:
        out = {**self.fields, "kind": self.kind, "info_schema": INFO_SCHEMA}
        if self.task:
            out["task"] = self.task
        if self.provenance:
            out["provenance"] = dict(self.provenance)
        if self.output_choice:
            out["output_choice"] = dict(self.output_choice)
        if self.kind == "external":
            out["external"] = True  # read by stores' older readers
        return out

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ModelInfo:
        info = dict(info or {})
        kind = info.pop("kind", None) or infer_kind(info)
        info.pop("info_schema", None)
        return cls(kind=str(kind), task=info.pop("task", None) or None,
                   provenance=dict(info.pop("provenance", None) or {}) if isinstance(info.get("provenance"), dict)
                   else {}, output_choice=dict(info.pop("output_choice", None) or {})
                   if isinstance(info.get("output_choice"), dict) else {}, fields=info)


def _set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and str(value) not in (
        "", "nan", "None", "model")


def infer_kind(info: Mapping[str, Any], axes: bool = True) -> str:
    """The kind of a model info written before ``kind`` existed: ``anchor`` when ``role`` is set,
    ``external`` when ``external`` is true or (``axes``: the store has grid axes at all) there is no
    ``n_backgrounds``, else ``grid``."""
    if _set(info.get("role")):
        return "anchor"
    if info.get("external") in (True, "True", "true", 1) or (axes and not _set(info.get("n_backgrounds"))):
        return "external"
    return "grid"


def kinds_of(metrics: Any) -> Any:
    """Series: every row's model kind (the ``kind`` column where a store has it, inferred where not) —
    rows of :func:`probe.store.read_metrics`."""
    import pandas as pd

    if metrics is None or not len(metrics):
        return pd.Series([], dtype=object)
    cols = [c for c in ("kind", "role", "external", "n_backgrounds") if c in metrics]
    rows = metrics[cols].to_dict("records")
    axes = "n_backgrounds" in metrics
    return pd.Series([r["kind"] if r.get("kind") in KINDS else infer_kind(r, axes) for r in rows],
                     index=metrics.index, dtype=object)
