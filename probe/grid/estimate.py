"""Expected wall time of a study on one GPU and on a 2-core CPU, from documented step-time tables (estimates
until measured), and per rung of its scale ladder (:mod:`probe.grid.scale`).

``probe grid run SPEC --dry-run`` and ``probe demo --spec X --dry-run`` print them::

    from probe.grid.estimate import estimate_study, estimate_cpu, rungs_text
    est = estimate_study(spec)                  # spec: probe.grid.spec.StudySpec
    est["hours"], est["per_family"]             # total GPU hours on one GPU, and the split by family
    estimate_cpu(spec)["hours"]                 # wall hours on 2 single-threaded CPU workers
    print(rungs_text("analyses/derain_ntrend.toml"))   # every rung: cells, steps, CPU and GPU time

CPU: :data:`CPU_STEP_MS` (whole-cell ms per step at tiny / 48 px / batch 8), scaled like the GPU table.

The table holds training-step times measured on one NVIDIA H200 (PyTorch 2.11, CUDA 13) for each family at
paper size, 128 px patches, batch 16, by ``python benchmarks/gpu_train.py --quick`` on 2026-11-30 (probe's
trainer, rain synthesised on the GPU; SwinIR: the bare loop, which the trainer matched to 1.00×). One
quick run: ±5 % is the honest reading. Re-measure on your GPU and update :data:`STEP_MS`. Other sizes,
patches and batches are scaled linearly by parameter count × pixels per batch, never below
:data:`FLOOR_MS` (small models are bound by kernel launches, not arithmetic). Validation, checkpoints and
evaluation add :data:`OVERHEAD`.
"""

from __future__ import annotations

import functools
from typing import Any

#: ms per training step, paper size, 128 px, batch 16, one H200 — (family, precision) → ms.
#: Convolutional families run channels-last. Source: benchmarks/gpu_train.py (see the module docstring).
STEP_MS: dict[tuple[str, str], float] = {
    ("resnet", "fp32"): 22.4, ("resnet", "bf16"): 11.8, ("resnet", "fp16"): 11.8,
    ("unet", "fp32"): 9.6, ("unet", "bf16"): 7.0, ("unet", "fp16"): 6.5,
    ("swinir", "fp32"): 207.0, ("swinir", "bf16"): 139.0, ("swinir", "fp16"): 145.0,
    ("nafnet", "fp32"): 60.3, ("nafnet", "bf16"): 65.4, ("nafnet", "fp16"): 69.3,
}
REFERENCE = {"size": "paper", "patch": 128, "batch": 16}
FLOOR_MS = 2.0
OVERHEAD = 0.05
MACHINE = "one NVIDIA H200 (PyTorch 2.11, CUDA 13)"

#: Whole-cell wall ms per training step on one core of a 2-core CPU, tiny size, 48 px, batch 8, fp32, one
#: thread per worker — family → ms. ResNet: the default demo's grid on 2 quiet cores (README, 2026-12-01: 18
#: cells x 300 steps in 258 s with 2 workers = 95.6 ms per step per worker, data synthesis, evaluation and
#: checkpoints included). The other families: ResNet's number times their ratio to ResNet measured side by side
#: by ``benchmarks/cpu_steps.py`` (2026-12-03, trainer ms/step: resnet 162.6, unet 147.2, swinir 704.7, nafnet
#: 148.1 on a machine at load 8 — absolute numbers of that run are not quiet-machine numbers, ratios are).
CPU_STEP_MS: dict[str, float] = {"resnet": 95.6, "unet": 86.6, "swinir": 414.3, "nafnet": 87.1}
CPU_REFERENCE = {"size": "tiny", "patch": 48, "batch": 8}
CPU_FLOOR_MS = 1.0
#: whole-cell overhead beyond CPU_STEP_MS (already included in it)
CPU_OVERHEAD = 0.0
CPU_MACHINE = "2 quiet CPU cores"


@functools.lru_cache(maxsize=64)
def parameter_count(family: str, size: str, kwargs_json: str = "{}") -> int:
    """Parameters of a family at a size (built on the meta device: no memory, no init cost)."""
    import json

    import torch

    from probe.models import build

    with torch.device("meta"):
        model = build(family, size, **json.loads(kwargs_json))
    return sum(p.numel() for p in model.parameters())


def step_ms(family: str, size: str, patch: int, batch: int, precision: str = "bf16",
            kwargs_json: str = "{}") -> float | None:
    """Estimated ms per training step on the table's GPU; None for a family the table does not list."""
    precision = "bf16" if precision == "auto" else precision
    base = STEP_MS.get((family, precision))
    if base is None:
        return None
    ratio = parameter_count(family, size, kwargs_json) / parameter_count(family, REFERENCE["size"])
    pixels = (batch * patch * patch) / (REFERENCE["batch"] * REFERENCE["patch"] ** 2)
    return max(FLOOR_MS, base * ratio * pixels)


def cpu_step_ms(family: str, size: str, patch: int, batch: int, kwargs_json: str = "{}") -> float | None:
    """Estimated ms per training step on one core of :data:`CPU_MACHINE`; None for a family not in
    :data:`CPU_STEP_MS`. Scaled from the table's reference by parameter count × pixels per batch."""
    base = CPU_STEP_MS.get(family)
    if base is None:
        return None
    ratio = parameter_count(family, size, kwargs_json) / parameter_count(family, CPU_REFERENCE["size"])
    pixels = (batch * patch * patch) / (CPU_REFERENCE["batch"] * CPU_REFERENCE["patch"] ** 2)
    return max(CPU_FLOOR_MS, base * ratio * pixels)


def _hours(spec: Any, cells: list[Any] | None, step: Any, overhead: float) -> tuple[dict[str, float], set[str]]:
    """Per family: the hours of training ``cells`` one after another, ``step(config) -> ms | None``; one config
    is built per distinct (model, data, train) part, so planning stays linear in cells."""
    from probe.grid.checks import distinct_cells

    per_family: dict[str, float] = {}
    unknown: set[str] = set()
    cells = cells if cells is not None else spec.cells()
    for same in distinct_cells(spec, cells, {"model", "data+eval", "train"}).values():  # one config per kind
        config = spec.config_for(same[0])
        ms = step(config)
        if ms is None:
            unknown.add(config.model.family)
            continue
        hours = len(same) * config.train.iterations * ms / 1000 / 3600 * (1 + overhead)
        per_family[config.model.family] = per_family.get(config.model.family, 0.0) + hours
    return per_family, unknown


def _kwargs_json(config: Any) -> str:
    import json

    return json.dumps(config.model.kwargs, sort_keys=True, default=str)


def estimate_study(spec: Any, cells: list[Any] | None = None, gpus: int = 1) -> dict[str, Any]:
    """Expected wall time of training ``cells`` (default: all) of ``spec`` on ``gpus`` GPUs of the table's
    kind, one cell at a time per GPU: ``{"hours", "gpu_hours", "per_family": {family: gpu hours}, "unknown":
    [families], "note"}``."""
    def step(config: Any) -> float | None:
        return step_ms(config.model.family, config.model.size, config.data.patch, config.train.batch,
                       config.train.precision, _kwargs_json(config))

    per_family, unknown = _hours(spec, cells, step, OVERHEAD)
    gpu_hours = sum(per_family.values())
    return {"gpu_hours": gpu_hours, "hours": gpu_hours / max(1, gpus), "per_family": per_family,
            "unknown": sorted(unknown),
            "note": f"estimate from the trainer's step times measured on {MACHINE} "
                    f"(probe/grid/estimate.py), scaled to this spec; the whole study was not timed"}


def estimate_cpu(spec: Any, cells: list[Any] | None = None, workers: int = 2) -> dict[str, Any]:
    """Expected wall time of training ``cells`` (default: all) of ``spec`` on ``workers`` single-threaded CPU
    workers of :data:`CPU_MACHINE`, as the local executor runs them: ``{"hours", "cpu_hours", "per_family",
    "unknown", "note"}``. Training only (data, evaluation and checkpoints in :data:`CPU_OVERHEAD`); measuring
    and the report add a few minutes for the cheap probes."""
    def step(config: Any) -> float | None:
        return cpu_step_ms(config.model.family, config.model.size, config.data.patch, config.train.batch,
                           _kwargs_json(config))

    per_family, unknown = _hours(spec, cells, step, CPU_OVERHEAD)
    cpu_hours = sum(per_family.values())
    n_cells = len(cells if cells is not None else spec.cells())
    return {"cpu_hours": cpu_hours, "hours": cpu_hours / max(1, min(workers, n_cells)),
            "per_family": per_family, "unknown": sorted(unknown),
            "note": f"estimate from step times measured on {CPU_MACHINE} (benchmarks/cpu_steps.py), "
                    f"{workers} workers of one thread"}


def estimate_rungs(raw: dict[str, Any], source: str = "spec", workers: int = 2, gpus: int = 1
                   ) -> list[dict[str, Any]]:
    """One row per rung of a spec table's ladder (:mod:`probe.grid.scale`): ``{"rung", "study", "cells",
    "iterations", "cpu_hours", "gpu_hours", "unknown", "description"}`` — expected wall hours on ``workers``
    CPU workers and on ``gpus`` GPUs of the tables' machines (of the families the tables list: ``unknown``
    names the others, whose cells are not counted). Raises ConfigError for a rung that does not load."""
    from probe.grid.scale import rung_names, rung_tables
    from probe.grid.spec import StudySpec

    rows = []
    tables = rung_tables(raw, source)
    for rung in rung_names(raw, source):
        spec = StudySpec.from_dict(raw, source=source, scale=rung)
        cells = spec.cells()
        iterations = sorted({spec.config_for(c).train.iterations for c in cells})
        cpu, gpu = estimate_cpu(spec, cells, workers), estimate_study(spec, cells, gpus)
        rows.append({"rung": rung, "study": spec.name, "cells": len(cells), "iterations": iterations,
                     "cpu_hours": cpu["hours"], "gpu_hours": gpu["hours"],
                     "unknown": sorted(set(cpu["unknown"]) | set(gpu["unknown"])),
                     "description": (tables.get(rung) or {}).get("description", "")})
    return rows


def rung_table_text(rows: list[dict[str, Any]], workers: int = 2, gpus: int = 1) -> str:
    """The rows of :func:`estimate_rungs` as the text ``--dry-run`` prints."""
    def hours(h: float, partial: bool) -> str:
        text = ("<1 min" if h * 60 < 1 else f"{h * 60:.0f} min" if h < 2 else f"{h:.1f} h" if h < 48
                else f"{h / 24:.0f} d")
        return f">={text}" if partial else text

    lines = [f"rungs (expected training wall time; CPU: {workers} one-thread workers like {CPU_MACHINE}; "
             f"GPU: {gpus} x {MACHINE}, one cell at a time — the batched executor is faster for tiny models):"]
    width = max([10] + [len(r["rung"]) for r in rows])
    for r in rows:
        its = "-".join(str(i) for i in (r["iterations"][0], r["iterations"][-1])) \
            if len(r["iterations"]) > 1 else str(r["iterations"][0])
        partial = bool(r["unknown"])
        lines.append(f"  {r['rung']:{width}s} {r['cells']:4d} cells x {its:>6s} steps  "
                     f"CPU {hours(r['cpu_hours'], partial):>8s}  GPU {hours(r['gpu_hours'], partial):>8s}  "
                     f"{r['description']}"
                     + (f" (>=: no step time for {', '.join(r['unknown'])}, not counted)" if partial else ""))
    return "\n".join(lines)


def rungs_text(path: Any, workers: int = 2, gpus: int = 1) -> str:
    """:func:`rung_table_text` for the spec file ``path`` (what ``--dry-run`` prints)."""
    from probe.train.config import load_toml

    return rung_table_text(estimate_rungs(load_toml(path), str(path), workers, gpus), workers, gpus)
