"""``probe demo``: the default study (or any ``--spec``: derain, denoise, deblur) end to end — grid, measure,
report — and its headline numbers, worded in the study's task (:mod:`probe.tasks`).

::

    from probe.demo import run_demo
    run_demo()       # trained_models/derain_complexity/ and reports/derain_complexity/report.html
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from probe.errors import ConfigError
from probe.study import DEFAULT_SPEC, bundled_spec

#: calibration anchors measured beside the demo's models (cheap ones: no training), see probe/anchors.py
DEMO_ANCHORS = ["identity", "oracle"]
__all__ = ["DEFAULT_SPEC", "DEMO_ANCHORS", "bundled_spec", "cpu_seconds", "run_cli", "run_demo"]


def resolve_spec(spec: str | Path | None) -> Path:
    """A spec path, or the name of a bundled study (``derain_ntrend`` or ``derain_ntrend.toml``); default: the
    bundled :data:`DEFAULT_SPEC`. ConfigError naming the value when it is neither."""
    if spec is None:
        return bundled_spec()
    path = Path(spec)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    if path.parent == Path(".") or str(path.parent) == "analyses":
        try:
            return bundled_spec(name)
        except ConfigError:
            pass
    raise ConfigError(f"--spec {str(spec)!r}: no such file and no bundled study of that name (bundled: "
                      f"{', '.join(sorted(p.stem for p in bundled_spec().parent.glob('*.toml')))})")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children, in seconds."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_demo(spec_path: str | Path | None = None, workers: int | None = None,
             models_root: str | Path = "trained_models", reports_root: str | Path = "reports",
             scale: str | None = None) -> dict:
    """Train, measure and report a study (``spec_path``: a path or a bundled study name; ``scale``: a rung of
    its ladder, :mod:`probe.grid.scale`). Returns the grid and measure summaries, the report path, the
    headline table and the timings (s)."""
    from probe.grid.runner import run_grid
    from probe.measure import measure
    from probe.report.build import build_report
    from probe.report.context import ReportContext
    from probe.report.sections.headline import (
        complexity_numbers,
        complexity_readable,
        complexity_verdict,
        headline_numbers,
        readable,
        verdict,
    )
    from probe.report.sections.shortcut import score_validity, validity_text
    from probe.study import load_study

    spec = load_study(resolve_spec(spec_path), scale=scale)
    models = Path(models_root) / spec.name
    reports = Path(reports_root) / spec.name
    timings = {}
    t0 = time.perf_counter()
    cpu0 = cpu_seconds()
    print(f"[1/3] training {len(spec.cells())} cells of {spec.name} (rung {spec.scale}) -> {models}", flush=True)
    grid = run_grid(spec, models, workers=workers)
    timings["grid_s"] = time.perf_counter() - t0
    if grid["failed"]:
        print(f"      {grid['failed']} cells failed (see `probe grid status {models}`); measuring the rest")
    t1 = time.perf_counter()
    print(f"[2/3] measuring -> {reports / 'results.h5'}", flush=True)
    summary = measure(models, out=reports / "results.h5", anchors=DEMO_ANCHORS)
    timings["measure_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    print("[3/3] drawing the report", flush=True)
    html = build_report(reports)
    timings["report_s"] = time.perf_counter() - t2
    ctx = ReportContext.load(reports)
    table = headline_numbers(ctx.metrics)
    remedies = _remedy_table(ctx)
    print()
    if remedies is not None:
        print("Remedies (paired change vs 'none' over seeds; ci: 95 % bootstrap, t: 95 % t-interval; the verdict "
              "is better/worse only when both exclude 0):")
        print(remedies.drop(columns=["none", "remedy_value"]).to_string(index=False,
                                                                        float_format=lambda v: f"{v:.3f}"))
        from probe.report.sections.remedies import INVISIBLE_DB, KEEP_DB, remedy_verdicts

        print(f"\nDoes each remedy help? (more unseen rain removed AND clean-input PSNR within {KEEP_DB:g} dB of "
              f"'none' or above {INVISIBLE_DB:.1f} dB)")
        print(remedy_verdicts(remedies)[["remedy", "ood_better", "ood_worse", "clean_psnr_delta", "clean_psnr",
                                         "verdict"]]
              .to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
    overall = complexity_numbers(ctx.metrics)
    if remedies is None and not overall.empty:
        print(f"Headline, {ctx.task.task}: Spearman rho of the measured complexity of each model's training "
              f"backgrounds (PNG bits/pixel) with the fraction of {ctx.task.unseen} it removes, one point per "
              "model; [95% bootstrap CI over seeds], permutation p; the papers predict rho < 0:")
        print(complexity_readable(overall, ctx.task).to_string(index=False))
        print(complexity_verdict(overall))
    if remedies is None and not table.empty:
        print(f"\nWithin each source, rho over n_backgrounds (OOD removal = fraction of the {ctx.task.unseen} "
              "removed; the papers predict rho(n, OOD removal) < 0):")
    if not table.empty:
        print(readable(table, ctx.task).to_string(index=False))
        print(verdict(table, ctx.task))
    validity = score_validity(ctx.metrics)
    if not validity.empty:
        print("\nShortcut score (ID data only) vs OOD removal: " + validity_text(validity))
    total = time.perf_counter() - t0
    timings["cpu_s"] = cpu_seconds() - cpu0
    print(f"\nreport: {html}\n(grid {timings['grid_s']:.0f} s, measure {timings['measure_s']:.0f} s, "
          f"report {timings['report_s']:.0f} s, total {total:.0f} s wall; {timings['cpu_s']:.0f} s CPU "
          "over every process)")
    return {"grid": grid, "measure": summary, "report": str(html), "headline": table, "timings": timings}


def _remedy_table(ctx):
    """The Remedies effects table when the study has a ``remedy`` axis (else None)."""
    metrics = ctx.metrics
    if not len(metrics) or "remedy" not in metrics or metrics["remedy"].dropna().empty:
        return None
    from probe.report.sections.remedies import remedy_effects

    metrics = metrics[metrics["remedy"].notna()].assign(remedy=lambda f: f["remedy"].astype(str))
    effects = remedy_effects(metrics, ctx.ood_splits())
    return effects if not effects.empty else None


def run_cli(args: argparse.Namespace) -> int:
    if getattr(args, "dry_run", False):
        from probe.grid.estimate import rungs_text
        from probe.study import load_study

        path = resolve_spec(args.spec)
        spec = load_study(path, scale=args.scale)
        print(f"study {spec.name}: rung {spec.scale}, {len(spec.cells())} cells\n" + rungs_text(path))
        return 0
    run_demo(args.spec, workers=args.workers, scale=getattr(args, "scale", None))
    return 0
