"""``measure()``: plan, then run — probes over run directories, grids, checkpoints or model cards into one
result store.

:mod:`probe.measure.plan` computes the plan (entries × per-model and study probes); :mod:`probe.measure.runner`
executes it inside one store transaction, with one failure policy: a probe that fails on a model, or a model
that fails to load, is recorded in the store (:mod:`probe.measure.failures`) and the rest goes on;
``summary["failed"]`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError
from probe.measure.info import model_info, training_complexity
from probe.measure.plan import DEFAULT_PROBES, Plan, grid_entries, make_probes, split_probes
from probe.measure.runner import run_probes

__all__ = ["DEFAULT_PROBES", "find_study", "make_probes", "measure", "model_info", "plan_measure", "run_probes",
           "training_complexity"]


#: Seconds between store commits while measuring (also: one commit per model).
COMMIT_EVERY_S = 5.0


def find_study(path: Path) -> tuple[str, dict[str, Any] | None, Path | None]:
    """The study a run directory (or grid directory) belongs to: name, study.json content, its folder."""
    from probe.records import find_study as find

    record = find(path)
    if record is None:
        return Path(path).resolve().name, None, None
    return record.name, record.to_dict(), record.path.parent


def _kind(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        return "grid"
    return "card" if path.suffix.lower() == ".toml" else "checkpoint"


def plan_measure(path: str | Path, probes: list[str] | None = None, splits: list[str] | None = None,
                 out: str | Path | None = None, device: str = "cpu", anchors: Any = None,
                 probe_params: dict[str, dict[str, Any]] | None = None, **external: Any
                 ) -> tuple[Plan, Path, dict[str, Any]]:
    """(the plan, the store path, summary fields) of ``measure(path, ...)`` — nothing is measured. Raises
    :class:`ConfigError` / :class:`DataError` for bad input (before any work)."""
    from probe.records import find_study as find

    path = Path(path)
    kind = _kind(path)
    if kind == "grid" and external:
        raise ConfigError(f"{path}: {', '.join(sorted(external))} only apply to a checkpoint or a model card")
    if anchors and kind != "grid":
        raise ConfigError(f"{path}: anchors are measured beside a grid's runs; pass a run or grid directory")
    if anchors:  # validate the names before any work (issue 12 calibration anchors)
        from probe.models.anchors import parse_anchors

        anchors = parse_anchors(anchors)
    study = find(path) if kind == "grid" else None
    name = study.name if study is not None else (path.resolve().name if kind == "grid" else path.stem)
    out = Path(out) if out is not None else Path("reports") / name / "results.h5"
    fields: dict[str, Any] = {"study_dir": study.path.parent if study is not None else None}
    if kind == "grid":
        root = study.path.parent if study is not None else (path if not (path / "run.json").is_file() else path.parent)
        entries = grid_entries(path, root, splits, device)
        fields["unfinished"] = entries[0].info.pop("_unfinished", 0)
        configs = [e.record.config for e in entries]
        names = probes or (study.probes if study is not None else None) or DEFAULT_PROBES
        params = study.probe_params if study is not None else {}
        kinds = {"grid"} | ({"anchor"} if anchors else set())
        if anchors:
            from probe.measure.plan import anchor_entries

            entries += anchor_entries(anchors, entries, out.parent, device)
    else:
        from probe.measure.external import external_entry

        entry, configs, study_beside = external_entry(path, kind, out, splits, device, **external)
        entries = [entry]
        names = probes or (study_beside.probes if study_beside is not None else None) or DEFAULT_PROBES
        params = study_beside.probe_params if study_beside is not None else {}
        kinds = {"external"}
        name = study_beside.name if study_beside is not None else name
        fields.update(load=entry.info.get("load", ""), model_id=entry.model_id)
        if external.get("eval_folders"):
            from probe.probes.evalfolders import summary_lines

            fields["eval_data"] = summary_lines(entry.evals[0])
    params = with_overrides(params, probe_params)
    per_model, study_probes = split_probes(list(names), params, kinds)
    if fields.get("eval_data") is not None:  # which images the expensive probes use, the forward-pass bound
        from probe.probes.bounds import plan_lines

        first = entries[0].evals[0].splits
        sizes = [len(b) for b in first.values()]
        hw = tuple(next(iter(first.values())).degraded.shape[-2:])
        fields["eval_data"] += plan_lines({p.name: p for p in per_model}, min(sizes), hw)
    return Plan(study=name, entries=entries, probes=per_model, study_probes=study_probes, configs=configs,
                probe_params=params), out, fields


def with_overrides(params: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]] | None
                   ) -> dict[str, dict[str, Any]]:
    """The study's probe parameters with the caller's ``{probe: {parameter: value}}`` over them; one
    :class:`ConfigError` for a malformed mapping or an unknown probe (parameter values are validated when the
    probes are built, before any work)."""
    if not overrides:
        return params
    from probe.probes import PROBES

    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ConfigError(f"probe parameters must be {{probe: {{parameter: value}}}}, got {overrides!r}")
    unknown = sorted(set(overrides) - set(PROBES.names()))
    if unknown:
        raise ConfigError(f"probe parameters for {unknown[0]!r}: no such probe ({', '.join(PROBES.names())})")
    out = {k: dict(v) for k, v in params.items()}
    for name, values in overrides.items():
        out[name] = {**out.get(name, {}), **values}
    return out


def measure(path: str | Path, probes: list[str] | None = None, splits: list[str] | None = None,
            out: str | Path | None = None, force: bool = False, device: str | None = None,
            show_progress: bool | None = None, anchors: Any = None,
            probe_params: dict[str, dict[str, Any]] | None = None, **external: Any) -> dict[str, Any]:
    """Run ``probes`` on what ``path`` names and store the results in ``out`` (``results.h5``).

    ``path``: a run directory, a grid directory (every finished run), a checkpoint file (with ``arch=`` /
    ``family=``, or probe's own safetensors) or a model card (``.toml``). ``external`` options (checkpoints and
    cards only; see :func:`probe.measure.external.external_entry`): ``arch``, ``arch_kwargs``, ``family``,
    ``size``, ``name``, ``strict``, ``allow_missing``, ``dtype``, the conventions (``output``, ``output_is``,
    ``input_range``, ``pad_multiple``, ``pad_mode``, ``tile``, ``tile_overlap``, ``layers``) and the evaluation
    (``eval_folders`` = ``{split: folder}``, ``eval_patch``, ``skip_broken``, ``eval_layout`` = ``{split:
    layout}`` for folders whose layout names cannot reveal, docs/test-sets.md; ``metric_conventions``: a code
    base's ``val.metrics``, scored beside probe's own on those folders, :mod:`probe.codebase_metrics`).
    Without ``eval_folders`` an external network is measured on every evaluation set of the study already in
    ``out``'s folder (``study.json``; one per background source), else of the bundled default study — the same
    images as the grid's models.

    ``anchors`` (grids only): calibration anchors measured beside the runs (:mod:`probe.anchors`).
    ``probe_params``: ``{probe: {parameter: value}}`` over the study's (e.g. ``{"cem": {"context": None}}``).
    Study probes (``shortcut``, ``cka_models`` brought along by ``cka``) run after the per-model probes.

    Returns ``{"store", "study", "computed", "skipped", "runs", "unfinished", "failed": [{"model", "probe",
    "cause"}], <study probe name>: its summary, ...}``. Results already stored (same model, probe, parameters
    and evaluation set) are skipped unless ``force``.
    """
    from probe.store import ResultStore
    from probe.train.trainer import resolve_device

    dev = str(resolve_device(device or "cpu"))
    plan, out, fields = plan_measure(path, probes, splits, out, dev, anchors, probe_params, **external)
    out.parent.mkdir(parents=True, exist_ok=True)
    namespace = None
    if fields.get("study_dir") is not None:
        _copy_study_record(fields["study_dir"] / "study.json", out)
        namespace = plan.study
    elif (out.parent / "study.json").is_file():  # an external network beside a grid: in the grid's study
        namespace = plan.study
    store = ResultStore(out, study=_study_namespace(namespace))
    summary: dict[str, Any] = {"store": str(out), "study": plan.study, "computed": 0, "skipped": 0,
                               "runs": sum(e.kind != "anchor" for e in plan.entries),
                               "unfinished": fields.get("unfinished", 0), "failed": []}
    summary.update({k: v for k, v in fields.items() if k in ("load", "model_id", "eval_data")})
    from probe.measure.runner import run_plan
    from probe.store.interrupt import interrupted, sigterm_raises

    try:  # incremental: committed after every model and every few seconds; an exception commits what is done
        with sigterm_raises(), store.transaction(keep_on_error=True, commit_every_s=COMMIT_EVERY_S):
            run_plan(plan, store, summary, force=force, device=dev, show_progress=show_progress, splits=splits)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: every finished result is committed
        raise interrupted(exc, store, summary) from None
    if store.commits:  # one fold per measure call: results.h5 alone is the whole store again
        from probe.errors import StoreError

        try:
            store.compact()
        except (OSError, StoreError) as exc:  # the results are safe in their segments; readers merge them
            summary["compact"] = str(exc)
    anchor_ids = [e.model_id for e in plan.entries if e.kind == "anchor"]
    if anchor_ids:
        summary["anchors"] = {"anchor_models": anchor_ids, **summary["by_kind"].get("anchor", {}),
                              "failed": [f for f in summary["failed"] if f["model"] in anchor_ids]}
    return summary


def _study_namespace(name: str | None) -> str:
    """The store namespace of a study: its name made a valid HDF5 group name ("" for none)."""
    import re

    return re.sub(r"[/\x00]", "_", name or "").strip(".") if name else ""


def _copy_study_record(source: Path, out: Path) -> None:
    """``study.json`` beside the store (skipped when identical: a read-only folder with everything stored works)."""
    from probe.errors import StoreError

    target = out.parent / "study.json"
    data = source.read_bytes()
    if target.is_file() and target.read_bytes() == data:
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        from probe.fsutil import write_atomic

        write_atomic(target, lambda tmp: tmp.write_bytes(data))
    except OSError as exc:
        raise StoreError(f"cannot write {target} (the folder {out.parent} is not writable: "
                         f"{exc.strerror or exc}); choose another --out") from None
