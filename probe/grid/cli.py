"""``probe grid run SPEC`` and ``probe grid status DIR``."""

from __future__ import annotations

import argparse
from typing import Any


def run_cli(args: argparse.Namespace, spec: Any = None) -> int:
    """Train the study ``args.spec`` (or the already loaded and validated ``spec``, see
    :func:`probe.study.grid_run_cli`, which the ``probe`` command calls)."""
    from probe.grid.runner import run_grid
    from probe.grid.spec import StudySpec

    spec = spec if spec is not None else StudySpec.from_toml(args.spec)
    gpus = parse_gpus(getattr(args, "gpus", None))
    summary = run_grid(spec, args.out, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                       device=args.device, dry_run=args.dry_run, verbose=args.verbose,
                       retries=getattr(args, "retries", 2), connect_timeout=getattr(args, "connect_timeout", 10.0),
                       gpus=gpus)
    if args.dry_run:
        print(f"study {spec.name}: {len(summary['cells'])} cells -> {summary['out']} "
              f"({len(summary['todo'])} to train)")
        todo_ids = set(summary["todo"])
        for cell in summary["cells"]:
            print(f"  {'todo' if cell in todo_ids else 'done'}  {cell}")
        from probe.grid.estimate import estimate_study

        todo = [c for c in spec.cells() if c.id in todo_ids]
        est = estimate_study(spec, todo, gpus=len(gpus or [0]))
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(est["per_family"].items()))
        print(f"expected GPU wall time: {est['hours']:.1f} h on {len(gpus or [0])} GPU(s) "
              f"({est['gpu_hours']:.1f} GPU-hours: {parts or 'nothing to train'}"
              f"{'; no table entry for ' + ', '.join(est['unknown']) if est['unknown'] else ''}) — "
              f"{est['note']}")
        if spec.source.endswith(".toml"):
            from probe.grid.estimate import rungs_text

            print(f"chosen rung: {spec.scale}; " + rungs_text(spec.source, gpus=len(gpus or [0])))
        return 0
    print(f"study {spec.name}: {summary['done']}/{summary['total']} cells done "
          f"({summary['skipped']} already finished), {summary['failed']} failed -> {summary['out']}")
    for name, error in sorted(summary.get("prior_errors", {}).items()):
        print(f"  prior {name} failed: {error}")
    for name, outcome in sorted(summary["outcomes"].items()):
        if outcome["status"] in ("failed", "busy"):
            print(f"  {outcome['status']} {name}: {outcome.get('error', '')}")
    return 1 if summary["failed"] else 0


def parse_gpus(text: str | None) -> list[int] | None:
    """``"0,1"`` → ``[0, 1]``; ConfigError naming the value otherwise."""
    from probe.errors import ConfigError

    if text is None:
        return None
    try:
        gpus = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--gpus {text!r}: expected comma-separated device indices such as 0,1") from exc
    if not gpus:
        raise ConfigError("--gpus is empty")
    return gpus


def status_cli(args: argparse.Namespace) -> int:
    from probe.grid.runner import grid_status

    table = grid_status(args.out)
    counts = table["status"].value_counts().to_dict()
    order = ["done", "running", "interrupted", "failed", "pending"]
    print(", ".join(f"{k}: {counts.get(k, 0)}" for k in order) + f"  (total {len(table)})")
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20,
                                             "display.max_colwidth", 60):
        print(table.drop(columns=["error"]).to_string(index=False))
    failed = table[table.status == "failed"]
    for _, row in failed.iterrows():
        print(f"failed {row['cell']}: {row['error']}")
    return 0
