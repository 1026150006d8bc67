"""Failures are results too: a probe that failed on one model (or a model that failed to load) is stored.

A failure is stored as an entry of the pseudo-probe ``failed`` of that model, keyed like the result it stands
for (the probe's name + parameters, the evaluation set), with one metric row: ``split="all"``,
``metric="failed"``, ``value=NaN``, ``failed_probe`` (the probe, or ``load``) and ``cause`` (one line).
``probe report`` lists them; a later successful run of the same probe removes the entry; `probe measure`
retries failed ones (they do not count as stored results)::

    from probe.store import read_metrics
    df = read_metrics("reports/x/results.h5")
    df[df["probe"] == "failed"][["model_id", "failed_probe", "cause"]]
"""

from __future__ import annotations

from typing import Any

from probe.errors import one_line

FAILED_PROBE = "failed"


def cause_of(exc: BaseException) -> str:
    """One line: the exception type (unless it is a probe error) and its message, at most 300 characters."""
    from probe.errors import ProbeError

    text = one_line(exc) or type(exc).__name__
    if not isinstance(exc, ProbeError):
        text = f"{type(exc).__name__}: {text}"
    return text[:300]


def _key(probe: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"probe": probe, "params": dict(params)}


def record_failure(store: Any, model_id: str, info: dict[str, Any], probe: str, params: dict[str, Any],
                   eval_info: dict[str, Any] | None, cause: str, sha256: str = "") -> None:
    """Store that ``probe`` (``"load"`` for a model that did not load) failed on ``model_id`` with ``cause``."""
    from probe.probes.base import ProbeResult
    from probe.provenance import provenance

    result = ProbeResult(metrics=[{"split": "all", "metric": "failed", "value": float("nan"),
                                   "failed_probe": probe, "cause": cause}])
    store.write(model_id, info, FAILED_PROBE, _key(probe, params), result, eval_info=eval_info, sha256=sha256,
                provenance=provenance())


def clear_failure(store: Any, model_id: str, probe: str, params: dict[str, Any],
                  eval_info: dict[str, Any] | None) -> None:
    """Remove a stored failure of ``probe`` (after it succeeded)."""
    if store.has(model_id, FAILED_PROBE, _key(probe, params), eval_info):
        store.delete(model_id, FAILED_PROBE, _key(probe, params), eval_info)
