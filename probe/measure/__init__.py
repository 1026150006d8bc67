"""``probe measure``: run probes on a run, a grid, a checkpoint of your own network or a model card.

::

    from probe.measure import measure, plan_measure
    summary = measure("trained_models/derain_complexity", probes=["generalization", "decomposition"])
    summary["store"]             # reports/derain_complexity/results.h5
    measure("net_g_latest.pth", arch="my_arch.py:MyNet", arch_kwargs={"width": 32}, pad_multiple=8,
            out="reports/derain_complexity/results.h5")      # beside the grid: on each of its sources
    measure("cards/mynet.toml", out="reports/derain_complexity/results.h5")
    plan, store, _ = plan_measure("trained_models/derain_complexity")   # what would run, nothing measured
    plan.rows()

(model, probe, parameters, evaluation set) combinations already in the store are skipped unless ``force``.
Failures are stored, listed in ``summary["failed"]`` and in the report; the CLI then exits with status 3.
"""

from __future__ import annotations

from typing import Any

from probe.measure.core import DEFAULT_PROBES, find_study, measure, model_info, plan_measure, training_complexity

__all__ = ["DEFAULT_PROBES", "find_study", "measure", "model_info", "plan_measure", "run_cli", "training_complexity"]


def run_cli(args: Any) -> int:
    from probe.measure.cli import run_cli as run

    return run(args)
