"""``probe grid run SPEC`` and ``probe grid status DIR``."""

from __future__ import annotations

import argparse


def run_cli(args: argparse.Namespace) -> int:
    from probe.grid.runner import run_grid
    from probe.grid.spec import StudySpec

    spec = StudySpec.from_toml(args.spec)
    summary = run_grid(spec, args.out, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                       device=args.device, dry_run=args.dry_run, verbose=args.verbose)
    if args.dry_run:
        print(f"study {spec.name}: {len(summary['cells'])} cells -> {summary['out']} "
              f"({len(summary['todo'])} to train)")
        for cell in summary["cells"]:
            print(f"  {'todo' if cell in summary['todo'] else 'done'}  {cell}")
        return 0
    print(f"study {spec.name}: {summary['done']}/{summary['total']} cells done "
          f"({summary['skipped']} already finished), {summary['failed']} failed -> {summary['out']}")
    for name, error in sorted(summary.get("prior_errors", {}).items()):
        print(f"  prior {name} failed: {error}")
    for name, outcome in sorted(summary["outcomes"].items()):
        if outcome["status"] == "failed":
            print(f"  failed {name}: {outcome.get('error', '')}")
    return 1 if summary["failed"] else 0


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
