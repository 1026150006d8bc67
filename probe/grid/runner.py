"""Run a study grid: skip finished cells, resume interrupted ones, record failures, go on.

::

    from probe.grid.runner import run_grid
    summary = run_grid("analyses/derain_complexity.toml", out="trained_models/derain_complexity")
    summary["done"], summary["failed"]

Every cell trains in its own run directory ``<out>/<cell id>/``; ``<out>/study.json`` records the spec and
the cell list so ``probe grid status`` can tell pending cells from finished ones without the TOML file.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError
from probe.fsutil import require_utf8
from probe.grid.executors import default_workers, run_dask, run_local  # noqa: F401 (default_workers: public)
from probe.grid.spec import StudySpec
from probe.progress import progress
from probe.train.rundir import RunDir

STUDY_FILE = "study.json"
CELL_LOCK = ".cell.lock"


def run_cell(config_dict: dict[str, Any], out: str, device: str | None, threads: int,
             verbose: bool = False) -> dict[str, Any]:
    """Train one cell (in a worker). Never raises: failures are returned and recorded in ``run.json``.

    The cell's run directory is locked (``<cell>/.cell.lock``, :class:`probe.locks.FileLock`) while it trains:
    a cell another live process trains (a second ``probe grid run`` on the same ``--out``) is left to it and
    reported ``busy``."""
    import torch

    from probe.errors import StoreError
    from probe.locks import FileLock

    torch.set_num_threads(max(1, threads))
    from probe.train.config import TrainConfig
    from probe.train.trainer import train

    run = RunDir(out)
    t0 = time.perf_counter()
    try:
        lock = FileLock(Path(out) / CELL_LOCK, timeout=0, what=f"grid cell {out}").acquire()
    except StoreError as exc:
        return {"path": out, "status": "busy", "error": str(exc), "seconds": 0.0}
    try:
        config = TrainConfig.from_dict(config_dict)
        record = train(config, out, device=device, show_progress=verbose if verbose else False)
        return {"path": out, "status": record["status"], "seconds": time.perf_counter() - t0}
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM/SIGHUP (probe.interrupt): record it, then stop
        mark_interrupted(run, exc)
        raise
    except Exception as exc:  # one failing cell must not stop the grid
        message = f"{type(exc).__name__}: {exc}"
        try:
            record = run.read() if run.exists() else {"config": config_dict}
            record.update(status="failed", error=message)
            run.write(record)
        except Exception:
            pass
        return {"path": out, "status": "failed", "error": message, "seconds": time.perf_counter() - t0}
    finally:
        lock.release()


def mark_interrupted(run: RunDir, exc: BaseException) -> None:
    """Record a cell stopped by a signal as ``interrupted`` (its last ``state.pt`` is kept: a rerun resumes it).

    Best effort: a record that cannot be written is left as it is (``running`` with a dead owner reads as
    ``interrupted`` too, :meth:`probe.train.rundir.RunDir.status`)."""
    from probe.interrupt import describe

    try:
        if run.exists():
            record = run.read()
            if record.get("status") == "running":
                record.update(status="interrupted", error=f"stopped by {describe(exc)}; a rerun resumes it")
                run.write(record)
    except Exception:
        pass


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
             show_progress: bool | None = None, retries: int = 2, connect_timeout: float = 10.0,
             gpus: list[int] | None = None) -> dict[str, Any]:
    """Train every unfinished cell of ``spec``; returns counts and per-cell outcomes.

    ``executor``: ``local`` (one spawned process per cell), ``dask`` or ``batched`` (many cells in one vmapped
    step, :mod:`probe.grid.batched`); ``gpus`` (e.g. ``[0, 1]``) spreads the cells over those CUDA devices.
    A cell whose worker process is killed from outside (OOM killer, job limit, preemption) is recorded
    ``failed`` with its cause and the other cells go on (:mod:`probe.grid.executors`); a rerun resumes it.
    ``retries``: times the Dask executor reschedules a cell whose worker died (>= 0). ``connect_timeout``:
    seconds to reach ``scheduler`` before one ConfigError line naming it. Raises ConfigError for a bad
    executor, ``retries``, ``workers`` or ``gpus``.
    """
    if not isinstance(spec, StudySpec):
        spec = StudySpec.from_toml(spec)
    out = require_utf8(Path(out) if out is not None else Path("trained_models") / spec.name, "grid output folder")
    if executor not in ("local", "dask", "batched"):
        raise ConfigError(f"executor {executor!r} is unknown; allowed: local, dask, batched")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if not dry_run:  # a read-only place fails here in one line, before any worker starts
        from probe.fsutil import require_writable

        require_writable(out, "grid folder")
    if dry_run:  # the plan was validated at load; listing it needs no configs (linear in cells)
        ids = [cell.id for cell in spec.cells()]
        return {"study": spec.name, "out": str(out), "cells": ids, "dry_run": True,
                "todo": [i for i in ids if not is_finished(out / i)]}
    items = plan(spec, out)
    _write_study(out, spec, items)
    prior_errors = _train_priors(spec, device, show_progress)
    if spec.priors:  # what each content prior reconstructs goes on record beside the cells that use it
        _write_study(out, spec, items, priors=prior_summaries(spec))
    todo = [(i, c, p) for i, c, p in items if not is_finished(p)]
    summary: dict[str, Any] = {"study": spec.name, "out": str(out), "total": len(items),
                               "skipped": len(items) - len(todo), "outcomes": {}, "prior_errors": prior_errors}
    gpus = check_gpus(gpus)
    bar = progress(total=len(items), initial=len(items) - len(todo), desc=f"grid {spec.name}",
                   unit="cell", enabled=show_progress, leave=True)
    run = {"local": run_local, "dask": run_dask, "batched": _run_batched}[executor]
    outcomes = run(todo, workers, scheduler, device, threads_per_worker, verbose, retries=retries,
                   connect_timeout=connect_timeout, gpus=gpus)
    try:  # closing(): the executor's workers stop at once when this loop ends early (a signal, an error)
        with contextlib.closing(outcomes):
            for outcome in outcomes:
                summary["outcomes"][Path(outcome["path"]).name] = outcome
                bar.update(1)
                bar.set_postfix(last=f"{Path(outcome['path']).name}:{outcome['status']}", refresh=False)
    except KeyboardInterrupt as exc:  # workers stopped above; record the cells no worker could (e.g. Dask's)
        for _, _, path in todo:
            run = RunDir(path)
            if run.status() == "interrupted":  # its owner is gone (a remote worker cannot be told: left alone)
                mark_interrupted(run, exc)
        raise
    finally:
        bar.close()
    statuses = [o["status"] for o in summary["outcomes"].values()]
    summary["done"] = summary["skipped"] + statuses.count("done")
    summary["failed"] = statuses.count("failed")
    summary["busy"] = statuses.count("busy")
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


def _run_batched(todo, workers, scheduler, device, threads, verbose, gpus=None, **_):
    from probe.grid.batched import run_batched

    yield from run_batched(todo, workers, scheduler, device, threads, verbose, gpus)


def check_gpus(gpus: list[int] | None) -> list[int] | None:
    """Validate ``--gpus``: distinct visible CUDA device indices (ConfigError otherwise)."""
    if not gpus:
        return None
    from probe.device import resolve_device

    if len(set(gpus)) != len(gpus) or any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in gpus):
        raise ConfigError(f"--gpus {gpus!r}: expected distinct device indices such as 0,1")
    for g in gpus:
        resolve_device(f"cuda:{g}")
    return list(gpus)


def prior_summaries(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """``{name: {"out", "patch", "iterations", "size", "psnr_test", "codebook_usage"}}`` of the spec's trained
    ``[priors.NAME]`` (from each ``prior.json``; a prior not trained is ``{"out", "error"}``).

    ``psnr_test`` (dB) is the prior's reconstruction of held-out clean crops of ``patch`` px — what the
    remedies report checks before it trusts the prior remedy (:mod:`probe.report.sections.remedies`)."""
    import json

    from probe.models.vq import prior_files

    out: dict[str, dict[str, Any]] = {}
    for name, table in spec.priors.items():
        sidecar = prior_files(Path(table["out"]))[1]
        entry: dict[str, Any] = {"out": str(table["out"])}
        try:
            info = json.loads(sidecar.read_text(encoding="utf-8"))
            recipe, metrics = info.get("recipe") or {}, info.get("metrics") or {}
            entry.update({k: recipe.get(k) for k in ("patch", "iterations", "size", "background")})
            entry.update({k: metrics.get(k) for k in ("psnr_test", "codebook_usage")})
        except (OSError, ValueError) as exc:
            entry["error"] = f"{sidecar}: {type(exc).__name__}"
        out[name] = entry
    return out


def _write_study(out: Path, spec: StudySpec, items, priors: dict[str, Any] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from probe.records import StudyRecord  # the one writer of study.json (with its schema version)

    StudyRecord(name=spec.name, source=str(spec.source), spec=spec.to_dict(),
                cells=[{"id": cell_id, "axes": config["axes"]} for cell_id, config, _ in items],
                extra={"priors": priors} if priors else {}).dump(out / STUDY_FILE)


def read_study(out: str | Path) -> dict[str, Any]:
    from probe.records import StudyRecord  # the one reader of study.json

    path = Path(out) / STUDY_FILE
    if not path.is_file():
        raise DataError(f"{out}: no {STUDY_FILE} (not a grid output directory; run `probe grid run` first)")
    return StudyRecord.load(path).to_dict()


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
