"""``probe measure``: run probes over one run directory or every finished run of a grid into a store.

::

    from probe.measure import measure
    summary = measure("trained_models/derain_complexity", probes=["generalization", "decomposition"])
    summary["store"]             # reports/derain_complexity/results.h5

(model, probe, parameters, evaluation set) combinations already in the store are skipped unless ``force``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError
from probe.progress import progress

DEFAULT_PROBES = ["generalization", "decomposition"]


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
    return {f"complexity_{k}": float(v) for k, v in score_set(images).items()}


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


def measure(path: str | Path, probes: list[str] | None = None, splits: list[str] | None = None,
            out: str | Path | None = None, force: bool = False, device: str | None = None,
            show_progress: bool | None = None, anchors: Any = None) -> dict[str, Any]:
    from probe.device import to_device
    from probe.models.checkpoint import load_model
    from probe.probes import PROBES
    from probe.probes.evaldata import eval_data_for_run
    from probe.provenance import provenance
    from probe.store import ResultStore
    from probe.train.catalog import catalog_row, find_runs
    from probe.train.rundir import RunDir
    from probe.train.trainer import resolve_device

    path = Path(path)
    study_name, study, study_dir = find_study(path)
    spec = (study or {}).get("spec") or {}
    probe_names = probes or (spec.get("study") or {}).get("probes") or DEFAULT_PROBES
    probe_params = (spec.get("study") or {}).get("probe_params") or {}
    probe_objs = [PROBES.get(name)(**probe_params.get(name, {})) for name in probe_names]
    study_level = [p for p in probe_objs if getattr(p, "study_level", False)]  # scored after every model
    probe_objs = [p for p in probe_objs if p not in study_level]
    out = Path(out) if out is not None else Path("reports") / study_name / "results.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    if study_dir is not None:
        shutil.copyfile(study_dir / "study.json", out.parent / "study.json")
    root = study_dir or (path if not (path / "run.json").is_file() else path.parent)
    runs = [RunDir(p) for p in find_runs(path)]
    finished = [r for r in runs if r.status() == "done"]
    if not finished:
        raise DataError(f"{path}: no finished runs to measure ({len(runs)} run directories found)")
    dev = resolve_device(device or "cpu")
    if anchors:  # validate the names before any work (issue 12 calibration anchors)
        from probe.models.anchors import parse_anchors

        anchors = parse_anchors(anchors)
    store = ResultStore(out)
    summary: dict[str, Any] = {"store": str(out), "study": study_name, "computed": 0, "skipped": 0,
                               "runs": len(finished), "unfinished": len(runs) - len(finished)}
    bar = progress(total=len(finished) * len(probe_objs), desc=f"measure {study_name}", unit="probe",
                   enabled=show_progress, leave=True)
    measured: dict[str, Path] = {}
    try:
        for run in finished:
            record = run.read()
            row = catalog_row(run, root)
            model_id = row["run_id"]
            measured[model_id] = run.path
            data = None
            model = None
            with store.transaction():
                for probe in probe_objs:
                    if data is None:  # moved to the model's device once per run
                        data = to_device(eval_data_for_run(record).select(splits), dev)
                    if not force and store.has(model_id, probe.name, probe.params, data.info):
                        summary["skipped"] += 1
                        bar.update(1)
                        continue
                    if model is None:
                        model = load_model(run.path, device=str(dev))
                    result = probe.run(model, data)
                    store.write(model_id, model_info(row, record), probe.name, probe.params, result,
                                eval_info=data.info, sha256=record.get("weights_sha256", ""),
                                provenance=provenance())
                    summary["computed"] += 1
                    bar.update(1)
        if "cka" in probe_names and len(measured) >= 2:  # model x model CKA over the whole grid
            from probe.cross_models import measure_cross_model_cka

            first = eval_data_for_run(finished[0].read()).select(splits)
            summary["cross_model_cka"] = measure_cross_model_cka(
                measured, store, first, params=probe_params.get("cka", {}), force=force, device=str(dev),
                provenance=provenance())
        if anchors:  # --- calibration anchors (probe/anchors.py), stored as models with role "anchor" ---
            from probe.anchors import measure_anchors

            summary["anchors"] = measure_anchors(anchors, finished, store, probe_objs, root=root, splits=splits,
                                                 device=str(dev), force=force, provenance=provenance())
        if any(p.name == "shortcut" for p in study_level):
            from probe.shortcut import measure_shortcut

            summary["shortcut"] = measure_shortcut(store, provenance=provenance())
    finally:
        bar.close()
    return summary


def run_cli(args: argparse.Namespace) -> int:
    probes = [p.strip() for p in args.probes.split(",") if p.strip()] if args.probes else None
    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    if args.probes is not None and not probes:
        raise ConfigError("--probes is empty")
    summary = measure(args.path, probes=probes, splits=splits, out=args.out, force=args.force, device=args.device,
                      anchors=getattr(args, "anchors", None))
    print(f"measured {summary['runs']} runs of {summary['study']}: {summary['computed']} probe results computed, "
          f"{summary['skipped']} already stored -> {summary['store']}")
    if "anchors" in summary:
        a = summary["anchors"]
        print(f"anchors: {len(a['anchor_models'])} anchor models, {a['computed']} results computed, "
              f"{a['skipped']} already stored" + "".join(f"\n  failed: {f}" for f in a["anchor_failures"]))
    return 0
