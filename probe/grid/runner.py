"""Run a study grid: skip finished cells, resume interrupted ones, record failures, go on.

::

    from probe.grid.runner import run_grid
    summary = run_grid("analyses/derain_complexity.toml", out="trained_models/derain_complexity")
    summary["done"], summary["failed"]

Every cell trains in its own run directory ``<out>/<cell id>/``; ``<out>/study.json`` records the spec and
the cell list so ``probe grid status`` can tell pending cells from finished ones without the TOML file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError
from probe.fsutil import write_json_atomic
from probe.grid.spec import StudySpec
from probe.progress import progress
from probe.train.rundir import RunDir

STUDY_FILE = "study.json"


def default_workers(threads_per_worker: int = 1) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, threads_per_worker))


def run_cell(config_dict: dict[str, Any], out: str, device: str | None, threads: int,
             verbose: bool = False) -> dict[str, Any]:
    """Train one cell (in a worker). Never raises: failures are returned and recorded in ``run.json``."""
    import torch

    torch.set_num_threads(max(1, threads))
    from probe.train.config import TrainConfig
    from probe.train.trainer import train

    run = RunDir(out)
    t0 = time.perf_counter()
    try:
        config = TrainConfig.from_dict(config_dict)
        record = train(config, out, device=device, show_progress=verbose if verbose else False)
        return {"path": out, "status": record["status"], "seconds": time.perf_counter() - t0}
    except Exception as exc:  # one failing cell must not stop the grid
        message = f"{type(exc).__name__}: {exc}"
        try:
            record = run.read() if run.exists() else {"config": config_dict}
            record.update(status="failed", error=message)
            run.write(record)
        except Exception:
            pass
        return {"path": out, "status": "failed", "error": message, "seconds": time.perf_counter() - t0}


def plan(spec: StudySpec, out: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(cell id, resolved config dict, run directory) for every cell of the study."""
    items = []
    for cell in spec.cells():
        config = spec.config_for(cell)
        items.append((cell.id, config.to_dict(), out / cell.id))
    return items


def is_finished(path: Path) -> bool:
    """Done, with weights whose SHA-256 matches the record (a finished cell is never retrained)."""
    from probe.provenance import sha256_file

    run = RunDir(path)
    if run.status() != "done":
        return False
    try:
        return sha256_file(run.weights) == run.read().get("weights_sha256")
    except OSError:
        return False


def run_grid(spec: StudySpec | str | Path, out: str | Path | None = None, *, executor: str = "local",
             workers: int | None = None, scheduler: str | None = None, device: str | None = None,
             threads_per_worker: int = 1, dry_run: bool = False, verbose: bool = False,
             show_progress: bool | None = None) -> dict[str, Any]:
    """Train every unfinished cell of ``spec``; returns counts and per-cell outcomes."""
    if not isinstance(spec, StudySpec):
        spec = StudySpec.from_toml(spec)
    out = Path(out) if out is not None else Path("trained_models") / spec.name
    items = plan(spec, out)
    if dry_run:
        return {"study": spec.name, "out": str(out), "cells": [i for i, _, _ in items], "dry_run": True,
                "todo": [i for i, _, p in items if not is_finished(p)]}
    _write_study(out, spec, items)
    prior_errors = _train_priors(spec, device, show_progress)
    todo = [(i, c, p) for i, c, p in items if not is_finished(p)]
    summary: dict[str, Any] = {"study": spec.name, "out": str(out), "total": len(items),
                               "skipped": len(items) - len(todo), "outcomes": {}, "prior_errors": prior_errors}
    if executor not in ("local", "dask"):
        raise ConfigError(f"executor {executor!r} is unknown; allowed: local, dask")
    bar = progress(total=len(items), initial=len(items) - len(todo), desc=f"grid {spec.name}",
                   unit="cell", enabled=show_progress, leave=True)
    try:
        run = _run_local if executor == "local" else _run_dask
        for outcome in run(todo, workers, scheduler, device, threads_per_worker, verbose):
            summary["outcomes"][Path(outcome["path"]).name] = outcome
            bar.update(1)
            bar.set_postfix(last=f"{Path(outcome['path']).name}:{outcome['status']}", refresh=False)
    finally:
        bar.close()
    statuses = [o["status"] for o in summary["outcomes"].values()]
    summary["done"] = summary["skipped"] + statuses.count("done")
    summary["failed"] = statuses.count("failed")
    return summary


def _train_priors(spec: StudySpec, device: str | None, show_progress: bool | None) -> dict[str, str]:
    """Train the spec's ``[priors.NAME]`` (skipped when stored); a failure is returned, not raised, so the
    cells that do not need that prior still train (those that do fail with a line naming the prior)."""
    errors: dict[str, str] = {}
    if not spec.priors:
        return errors
    from probe.train.prior import train_prior

    for name, table in spec.priors.items():
        options = dict(table)
        if device:
            options["device"] = device
        try:
            train_prior(out=options.pop("out"), **options, show_progress=show_progress)
        except Exception as exc:  # one failing prior must not stop the grid
            errors[name] = f"{type(exc).__name__}: {exc}"
    return errors


def _run_local(todo, workers, scheduler, device, threads, verbose):
    if not todo:
        return
    workers = min(len(todo), workers or default_workers(threads))
    if workers == 1:
        for _, config, path in todo:
            yield run_cell(config, str(path), device, threads, verbose)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a forked child of a process that already used torch threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, config, str(path), device, threads, verbose) for _, config, path in todo]
        for future in as_completed(futures):
            yield future.result()


def _run_dask(todo, workers, scheduler, device, threads, verbose):
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError("the dask executor needs `distributed` (pip install distributed)") from exc
    if not todo:
        return
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        n = min(len(todo), workers or default_workers(threads))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(run_cell, config, str(path.resolve()), device, threads, verbose,
                                 key=f"probe-cell-{cell_id}-{time.time_ns()}", pure=False)
                   for cell_id, config, path in todo]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_study(out: Path, spec: StudySpec, items) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / STUDY_FILE, {
        "name": spec.name, "source": spec.source, "spec": spec.to_dict(),
        "cells": [{"id": cell_id, "axes": config["axes"]} for cell_id, config, _ in items],
    })


def read_study(out: str | Path) -> dict[str, Any]:
    path = Path(out) / STUDY_FILE
    if not path.is_file():
        raise DataError(f"{out}: no {STUDY_FILE} (not a grid output directory; run `probe grid run` first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt ({exc})") from exc


def grid_status(out: str | Path):
    """A DataFrame: one row per cell with its axis values, status, wall time and error."""
    import pandas as pd

    study = read_study(out)
    rows = []
    for cell in study["cells"]:
        run = RunDir(Path(out) / cell["id"])
        record = {}
        if run.exists():
            try:
                record = run.read()
            except Exception:
                record = {}
        rows.append({"cell": cell["id"], **cell["axes"], "status": run.status(),
                     "wall_time_s": record.get("wall_time_s"), "error": record.get("error")})
    return pd.DataFrame(rows)
