"""``measure()``: run probes over run directories, grids, checkpoints or model cards into one result store.

One call is one incremental store transaction: committed after every model and every few seconds (each commit
writes only what it adds), Ctrl-C / SIGTERM commit what is finished, and results are keyed by content (weights,
parameters, evaluation-set digest: :mod:`probe.store.identity`); see ``docs/store.md``. A probe that fails on a
model, or a grid model that fails to load, is recorded in the store (:mod:`probe.measure.failures`) and the
rest goes on; ``summary["failed"]`` lists them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError
from probe.progress import progress

DEFAULT_PROBES = ["generalization", "decomposition"]
#: Seconds between store commits while measuring (also: one commit per model).
COMMIT_EVERY_S = 5.0


def find_study(path: Path) -> tuple[str, dict[str, Any] | None, Path | None]:
    """The study a run directory (or grid directory) belongs to: name, study.json content, its folder."""
    for folder in [path, *path.resolve().parents][:4]:
        candidate = folder / "study.json"
        if candidate.is_file():
            try:
                study = json.loads(candidate.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{candidate}: corrupt ({exc})") from exc
            return study.get("name", folder.name), study, folder
    return path.resolve().name, None, None


@lru_cache(maxsize=64)
def training_complexity(background: str, options_json: str, n: int, patch: int, seed: int) -> dict[str, float]:
    """Measured complexity of a run's training backgrounds (means over its ``n_backgrounds`` images)."""
    from probe.data.backgrounds import make_background
    from probe.data.complexity import score_set

    source = make_background(background, patch, seed=seed, **json.loads(options_json))
    images = source.images(min(n, 64))
    return {**{f"complexity_{k}": float(v) for k, v in score_set(images).items()},
            "n_distinct_contents": source.distinct_contents(n)}


def model_info(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    info = {k: (None if _isnan(v) else v) for k, v in row.items()
            if k not in ("path", "error", "status") and not isinstance(v, (dict, list))}
    config = record.get("config") or {}
    data = config.get("data") or {}
    try:
        info.update(training_complexity(data.get("background"), json.dumps(data.get("background_options") or {},
                                                                            sort_keys=True),
                                        int(data.get("n_backgrounds", 1)), int(data.get("patch", 64)),
                                        int(config.get("seed", 0))))
    except Exception:  # complexity is a convenience column; never fail a measurement for it
        pass
    return info


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _kind(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        return "grid"
    return "card" if path.suffix.lower() == ".toml" else "checkpoint"


def measure(path: str | Path, probes: list[str] | None = None, splits: list[str] | None = None,
            out: str | Path | None = None, force: bool = False, device: str | None = None,
            show_progress: bool | None = None, anchors: Any = None, **external: Any) -> dict[str, Any]:
    """Run ``probes`` on what ``path`` names and store the results in ``out`` (``results.h5``).

    ``path``: a run directory, a grid directory (every finished run), a checkpoint file (with ``arch=`` /
    ``family=``, or probe's own safetensors) or a model card (``.toml``). ``external`` options (checkpoints and
    cards only; see :func:`probe.measure.external.resolve_external`): ``arch``, ``arch_kwargs``, ``family``,
    ``size``, ``name``, ``strict``, ``allow_missing``, ``dtype``, the conventions (``output``, ``output_is``,
    ``input_range``, ``pad_multiple``, ``pad_mode``, ``tile``, ``tile_overlap``, ``layers``) and the evaluation
    (``eval_folders`` = ``{split: folder}``, ``eval_patch``, ``skip_broken``, ``eval_layout`` = ``{split:
    layout}`` for folders whose layout names cannot reveal, docs/test-sets.md). Without ``eval_folders`` an
    external model sees the synthetic splits of the study already in ``out``'s folder (``study.json``), else
    of the bundled default study — the same images as the grid's models.

    ``anchors`` (grids only): calibration anchors measured beside the runs (:mod:`probe.anchors`).

    Returns ``{"store", "study", "computed", "skipped", "runs", "failed": [{"model", "probe", "cause"}], ...}``.
    The study-level ``shortcut`` score (if asked for) reads the per-model results of the same transaction:
    it is recomputed only when something new was measured (or ``force``).
    Results already stored (same model, probe, parameters and evaluation set) are skipped unless ``force``.
    """
    from probe.store import ResultStore

    path = Path(path)
    kind = _kind(path)
    if kind == "grid" and external:
        raise ConfigError(f"{path}: {', '.join(sorted(external))} only apply to a checkpoint or a model card")
    if anchors and kind != "grid":
        raise ConfigError(f"{path}: anchors are measured beside a grid's runs; pass a run or grid directory")
    if anchors:  # validate the names before any work (issue 12 calibration anchors)
        from probe.models.anchors import parse_anchors

        anchors = parse_anchors(anchors)
    study_name, study, study_dir = find_study(path) if kind == "grid" else (None, None, None)
    if out is None:
        out = Path("reports") / (study_name or path.stem) / "results.h5"
    out = Path(out)
    namespace = study_name if study_dir is not None else None  # a lone run (no study.json): no namespace
    if study_dir is not None:
        _copy_study_record(study_dir / "study.json", out)
    elif (out.parent / "study.json").is_file():  # an external model beside a grid: in the grid's study
        namespace = find_study(out.parent)[0]
    store = ResultStore(out, study=_study_namespace(namespace))
    summary: dict[str, Any] = {"store": str(out), "study": study_name or path.stem, "computed": 0, "skipped": 0,
                               "runs": 0, "unfinished": 0, "failed": []}
    from probe.store.interrupt import interrupted, sigterm_raises

    try:
        with sigterm_raises():
            _measure_into(store, path, kind, study, study_dir, summary, probes, splits, force, device,
                          show_progress, anchors, external)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: every finished result is committed (keep_on_error)
        raise interrupted(exc, store, summary) from None
    if store.commits:  # one fold per measure call (not per commit): results.h5 alone is the whole store again
        from probe.errors import StoreError

        try:
            store.compact()
        except (OSError, StoreError) as exc:  # the results are safe in their segments; readers merge them
            summary["compact"] = str(exc)
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


def _measure_into(store: Any, path: Path, kind: str, study: Any, study_dir: Path | None, summary: dict[str, Any],
                  probes: list[str] | None, splits: list[str] | None, force: bool, device: str | None,
                  show_progress: bool | None, anchors: Any, external: dict[str, Any]) -> None:
    study_level: list[Any] = []
    # incremental: committed after every model and every few seconds; an exception commits what is finished
    with store.transaction(keep_on_error=True, commit_every_s=COMMIT_EVERY_S):
        if kind == "grid":
            study_level = _measure_grid(path, study, study_dir, store, summary, probes, splits, force, device,
                                        show_progress, anchors)
        else:
            from probe.measure.external import measure_external

            measure_external(path, kind, store, summary, probes, splits, force, device, show_progress, **external)
        if any(p.name == "shortcut" for p in study_level) and (summary["computed"] or force
                                                                 or not _has_probe(store, "shortcut")):
            from probe.provenance import provenance
            from probe.shortcut import measure_shortcut

            try:  # reads this transaction; a failure here must not lose the per-model results
                summary["shortcut"] = measure_shortcut(store, provenance=provenance())
            except Exception as exc:  # noqa: BLE001 - one failing probe never stops the rest
                from probe.measure.failures import cause_of

                summary["failed"].append({"model": "_study", "probe": "shortcut", "cause": cause_of(exc)})


def _has_probe(store: Any, probe: str) -> bool:
    entries = store.entries()
    return bool(len(entries)) and bool((entries["probe"] == probe).any())


def make_probes(names: list[str], params: dict[str, Any]) -> list[Any]:
    from probe.probes import PROBES

    return [PROBES.get(name)(**params.get(name, {})) for name in names]


def run_probes(store: Any, model_id: str, info: dict[str, Any], load: Any, data: Any, probe_objs: list[Any],
               summary: dict[str, Any], bar: Any, force: bool, sha256: str = "",
               on_load_error: str = "record") -> Any:
    """Run every probe on one model; failures are recorded and counted, never raised (unless a load fails
    with ``on_load_error="raise"``). Returns the model (or None if it was never loaded)."""
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
            except Exception as exc:
                if on_load_error == "raise":
                    raise
                cause = cause_of(exc)
                record_failure(store, model_id, info, "load", {}, eval_info, cause, sha256)
                summary["failed"].append({"model": model_id, "probe": "load", "cause": cause})
                bar.update(len(probe_objs) - i)
                return None
        try:
            result = probe.run(model, data)
            store.write(model_id, info, probe.name, probe.params, result, eval_info=eval_info, sha256=sha256,
                        provenance=provenance())
        except Exception as exc:  # one failing probe (or unstorable result) never stops the study
            cause = cause_of(exc)
            record_failure(store, model_id, info, probe.name, probe.params, eval_info, cause, sha256)
            summary["failed"].append({"model": model_id, "probe": probe.name, "cause": cause})
        else:
            clear_failure(store, model_id, probe.name, probe.params, eval_info)
            summary["computed"] += 1
        bar.update(1)
    if model is not None:
        clear_failure(store, model_id, "load", {}, eval_info)
    store.commit()  # this model's results are safe from here on, whatever happens next
    return model


def _measure_grid(path: Path, study: dict[str, Any] | None, study_dir: Path | None, store: Any,
                  summary: dict[str, Any], probes: list[str] | None, splits: list[str] | None, force: bool,
                  device: str | None, show_progress: bool | None, anchors: Any = None) -> list[Any]:
    """Measure every finished run of a grid (inside the caller's transaction); returns the study-level
    probes (scored after the transaction commits)."""
    from probe.device import to_device
    from probe.models.checkpoint import load_model
    from probe.probes.evaldata import cached_eval_data, eval_data_for_run
    from probe.provenance import provenance
    from probe.store.identity import eval_identity
    from probe.train.catalog import catalog_row, find_runs
    from probe.train.rundir import RunDir
    from probe.train.trainer import resolve_device

    spec = (study or {}).get("spec") or {}
    probe_names = probes or (spec.get("study") or {}).get("probes") or DEFAULT_PROBES
    probe_params = (spec.get("study") or {}).get("probe_params") or {}
    probe_objs = make_probes(probe_names, probe_params)
    study_level = [p for p in probe_objs if getattr(p, "study_level", False)]  # scored after every model
    probe_objs = [p for p in probe_objs if p not in study_level]
    root = study_dir or (path if not (path / "run.json").is_file() else path.parent)
    runs = [RunDir(p) for p in find_runs(path)]
    finished = [r for r in runs if r.status() == "done"]
    if not finished:
        raise DataError(f"{path}: no finished runs to measure ({len(runs)} run directories found)")
    summary.update(runs=len(finished), unfinished=len(runs) - len(finished))
    dev = resolve_device(device or "cpu")
    records = [run.read() for run in finished]
    set_probe = None  # the shortcut score's attribution on the study's common probe set (probe/shortcut.py)
    if any(p.name == "shortcut" for p in study_level):
        from probe.shortcut import probe_set_info, probe_set_params, probe_set_sources

        set_sources = probe_set_sources(records)
        set_probe = make_probes(["attribution"], {"attribution": probe_set_params(probe_params.get("attribution"))})[0]
    bar = progress(total=len(finished) * (len(probe_objs) + (set_probe is not None)), desc=f"measure "
                   f"{summary['study']}", unit="probe", enabled=show_progress, leave=True)
    measured: dict[str, Path] = {}
    try:
        for run, record in zip(finished, records):
            row = catalog_row(run, root)
            model_id, info, sha256 = row["run_id"], model_info(row, record), record.get("weights_sha256", "")
            data = to_device(eval_data_for_run(record).select(splits), dev)  # moved once per run
            model = run_probes(store, model_id, info, lambda r=run: load_model(r.path, device=str(dev)), data,
                               probe_objs, summary, bar, force, sha256=sha256)
            if probe_objs and (model is not None or store.has(model_id, probe_objs[0].name, probe_objs[0].params,
                                                              eval_identity(data), sha256=sha256)):
                measured[model_id] = run.path
            if set_probe is None:
                continue
            try:
                set_data = to_device(cached_eval_data(probe_set_info(record.get("config") or {}, set_sources)), dev)
            except Exception as exc:  # noqa: BLE001 - the score falls back to the model's own id rows
                from probe.measure.failures import cause_of

                summary["failed"].append({"model": model_id, "probe": "attribution (probe set)",
                                          "cause": cause_of(exc)})
                bar.update(1)
                continue
            run_probes(store, model_id, info, lambda m=model, r=run: m if m is not None else load_model(
                r.path, device=str(dev)), set_data, [set_probe], summary, bar, force, sha256=sha256)
        if "cka" in probe_names and len(measured) >= 2:  # model x model CKA over the whole grid
            from probe.cross_models import measure_cross_model_cka

            first = eval_data_for_run(finished[0].read()).select(splits)
            try:
                summary["cross_model_cka"] = measure_cross_model_cka(
                    measured, store, first, params=probe_params.get("cka", {}), force=force, device=str(dev),
                    provenance=provenance())
            except Exception as exc:
                from probe.measure.failures import cause_of

                summary["failed"].append({"model": "_study", "probe": "cross_model_cka", "cause": cause_of(exc)})
        if anchors:  # --- calibration anchors (probe/anchors.py), stored as models with role "anchor" ---
            from probe.anchors import measure_anchors

            summary["anchors"] = measure_anchors(anchors, finished, store, probe_objs, root=root, splits=splits,
                                                 device=str(dev), force=force, provenance=provenance())
            summary["failed"] += [{"model": "anchor", "probe": "anchors", "cause": str(f)}
                                  for f in summary["anchors"].get("anchor_failures", [])]
    finally:
        bar.close()
    return study_level
