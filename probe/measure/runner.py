"""Execute a :class:`probe.measure.plan.Plan` with one failure policy.

Every entry (grid model, external network, anchor) goes through :func:`run_probes`: each per-model probe on
each of its evaluation sets, then the extra runs its study probes ask for (:meth:`StudyProbe.extra`). The
model is loaded once per entry, lazily (an entry whose results are all stored is never loaded). A model that
does not load and a probe that fails are stored as failures (:mod:`probe.measure.failures`), listed in
``summary["failed"]``, and the rest goes on. Then each study probe runs once over the entries; a study probe
that fails is listed with the study's name as its model and the rest goes on.
"""

from __future__ import annotations

from typing import Any

from probe.progress import progress


def run_probes(store: Any, model_id: str, info: dict[str, Any], load: Any, data: Any, probe_objs: list[Any],
               summary: dict[str, Any], bar: Any, force: bool, sha256: str = "",
               results: dict[str, Any] | None = None) -> Any:
    """Run every probe on one model and evaluation set; failures are recorded and counted, never raised.
    ``load()`` is called only when something is to be computed. ``results`` (optional) collects the computed
    :class:`ProbeResult` per probe name. Returns the model (or None if it was never loaded or did not load)."""
    from probe.measure.failures import cause_of, clear_failure, record_failure
    from probe.provenance import provenance
    from probe.store.identity import eval_identity

    model = None
    eval_info = eval_identity(data)  # the evaluation set with its content digest: part of every result's key
    for i, probe in enumerate(probe_objs):
        if not force and store.has(store.key_for(model_id, probe.name, probe.params, eval_info, sha256=sha256)):
            summary["skipped"] += 1
            bar.update(1)
            continue
        if model is None:
            try:
                model = load()
            except Exception as exc:  # noqa: BLE001 - one model that does not load never stops the rest
                cause = cause_of(exc)
                record_failure(store, model_id, info, "load", {}, eval_info, cause, sha256)
                summary["failed"].append({"model": model_id, "probe": "load", "cause": cause})
                bar.update(len(probe_objs) - i)
                return None
        try:
            result = probe.run(model, data)
            store.write(model_id, info, probe.name, probe.params, result, eval_info=eval_info, sha256=sha256,
                        provenance=provenance())
        except Exception as exc:  # noqa: BLE001 - one failing probe (or unstorable result) never stops the study
            cause = cause_of(exc)
            record_failure(store, model_id, info, probe.name, probe.params, eval_info, cause, sha256)
            summary["failed"].append({"model": model_id, "probe": probe.name, "cause": cause})
        else:
            clear_failure(store, model_id, probe.name, probe.params, eval_info)
            summary["computed"] += 1
            if results is not None:
                results[probe.name] = result
        bar.update(1)
    if model is not None:
        clear_failure(store, model_id, "load", {}, eval_info)
    store.commit()  # this model's results are safe from here on, whatever happens next
    return model


class _Once:
    """The entry's loader, called at most once (None after a failed load is retried by the next caller)."""

    def __init__(self, load: Any):
        self.load, self.model = load, None

    def __call__(self) -> Any:
        if self.model is None:
            self.model = self.load()
        return self.model


def run_plan(plan: Any, store: Any, summary: dict[str, Any], force: bool = False, device: str = "cpu",
             show_progress: bool | None = None, splits: list[str] | None = None) -> dict[str, Any]:
    """Run ``plan`` into ``store`` (inside the caller's transaction); returns ``summary`` updated with
    ``computed``, ``skipped``, ``failed`` and one key per study probe (its summary)."""
    from probe.device import to_device
    from probe.measure.failures import cause_of
    from probe.probes.study import StudyContext
    from probe.provenance import provenance

    extras = {e.model_id: [(sp, x) for sp in plan.study_probes if e.kind in sp.kinds
                           for x in _extra(sp, e, plan, summary)] for e in plan.entries}
    total = plan.size() + sum(len(v) for v in extras.values())
    bar = progress(total=total, desc=f"measure {summary['study']}", unit="probe", enabled=show_progress, leave=True)
    try:
        by_kind = summary.setdefault("by_kind", {})
        for entry in plan.entries:
            before = summary["computed"], summary["skipped"]
            load = _Once(entry.load)
            for data in entry.evals:
                run_probes(store, entry.model_id, entry.info, load, to_device(data, device), plan.probes, summary,
                           bar, force, sha256=entry.sha256)
            for _sp, (probe, data) in extras[entry.model_id]:
                run_probes(store, entry.model_id, entry.info, load, to_device(data, device), [probe], summary, bar,
                           force, sha256=entry.sha256, results=entry.results)
            load.model = None  # free it before the next entry
            counts = by_kind.setdefault(entry.kind, {"computed": 0, "skipped": 0})
            counts["computed"] += summary["computed"] - before[0]
            counts["skipped"] += summary["skipped"] - before[1]
    finally:
        bar.close()
    from probe.cross_models import study_store

    context = StudyContext(name=plan.study, study_store=study_store(store), probe_params=plan.probe_params,
                           splits=splits, device=device, force=force, provenance=provenance(),
                           computed=summary["computed"])
    for sp in plan.study_probes:
        entries = [e for e in plan.entries if e.kind in sp.kinds]
        try:  # reads this transaction; a failure here never loses the per-model results
            summary[sp.name] = sp.run(entries, store, context)
        except Exception as exc:  # noqa: BLE001 - one failing probe never stops the rest
            summary["failed"].append({"model": plan.study, "probe": sp.name, "cause": cause_of(exc)})
    return summary


def _extra(sp: Any, entry: Any, plan: Any, summary: dict[str, Any]) -> list[Any]:
    from probe.measure.failures import cause_of

    try:
        return list(sp.extra(entry, plan.configs, plan.probe_params))
    except Exception as exc:  # noqa: BLE001 - e.g. a probe set that cannot be built: recorded, the rest goes on
        summary["failed"].append({"model": entry.model_id, "probe": f"{sp.name} (extra runs)", "cause": cause_of(exc)})
        return []
