"""Expected GPU wall time of a study, from a documented throughput table (an estimate until measured).

``probe grid run SPEC --dry-run`` prints it::

    from probe.grid.estimate import estimate_study
    est = estimate_study(spec)                  # spec: probe.grid.spec.StudySpec
    est["hours"], est["per_family"]             # total GPU hours on one GPU, and the split by family

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


def estimate_study(spec: Any, cells: list[Any] | None = None, gpus: int = 1) -> dict[str, Any]:
    """Expected wall time of training ``cells`` (default: all) of ``spec`` on ``gpus`` GPUs of the table's
    kind: ``{"hours", "gpu_hours", "per_family": {family: gpu hours}, "unknown": [families], "note"}``."""
    import json

    from probe.grid.checks import distinct_cells

    per_family: dict[str, float] = {}
    unknown: set[str] = set()
    cells = cells if cells is not None else spec.cells()
    for same in distinct_cells(spec, cells, {"model", "data+eval", "train"}).values():  # one config per kind
        config = spec.config_for(same[0])
        t = config.train
        ms = step_ms(config.model.family, config.model.size, config.data.patch, t.batch, t.precision,
                     json.dumps(config.model.kwargs, sort_keys=True, default=str))
        if ms is None:
            unknown.add(config.model.family)
            continue
        hours = len(same) * t.iterations * ms / 1000 / 3600 * (1 + OVERHEAD)
        per_family[config.model.family] = per_family.get(config.model.family, 0.0) + hours
    gpu_hours = sum(per_family.values())
    return {"gpu_hours": gpu_hours, "hours": gpu_hours / max(1, gpus), "per_family": per_family,
            "unknown": sorted(unknown),
            "note": f"estimate from the trainer's step times measured on {MACHINE} "
                    f"(probe/grid/estimate.py), scaled to this spec; the whole study was not timed"}
