"""``probe measure`` and ``probe layers`` on the command line.

Exit status of ``probe measure``: 0 all done; 2 bad input (one line: a missing file, an unknown option, a
single checkpoint that does not load); 3 some probes (or grid models) failed — they are stored with their
cause, listed on stderr and in the report, and everything else was measured.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from probe.errors import ConfigError

EXIT_SOME_FAILED = 3


def _names(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError(f"{flag} is empty")
    return names


def _output(value: str | None) -> int | str | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def external_options(args: argparse.Namespace) -> dict[str, Any]:
    """The external-model options given on the command line (unset ones left out)."""
    opts = {"arch": args.arch, "arch_kwargs": args.arch_kwargs, "family": args.family, "size": args.size,
            "output": _output(args.output), "output_is": args.output_is, "input_range": args.input_range,
            "pad_multiple": args.pad_multiple, "pad_mode": args.pad_mode, "tile": args.tile,
            "tile_overlap": args.tile_overlap, "dtype": args.dtype,
            "layers": _names(args.layers, "--layers")}
    if args.allow_missing:
        opts["allow_missing"] = list(args.allow_missing)
        opts["strict"] = False
    return {k: v for k, v in opts.items() if v is not None}


def run_cli(args: argparse.Namespace) -> int:
    from probe.measure.core import measure

    probes = _names(args.probes, "--probes")
    splits = _names(args.splits, "--splits")
    external = external_options(args)
    if args.eval_folder:
        from probe.probes.evalfolders import parse_folder_args

        external["eval_folders"] = parse_folder_args(args.eval_folder)
    if getattr(args, "eval_layout", None):
        from probe.probes.evalfolders import parse_layout_args

        external["eval_layout"] = parse_layout_args(args.eval_layout, external.get("eval_folders") or {})
    if args.eval_patch is not None:
        external["eval_patch"] = args.eval_patch  # 0: whole images
    if args.skip_broken:
        external["skip_broken"] = True
    if args.name:
        external["name"] = args.name
    if getattr(args, "beside", None):  # the grid first, then the network, into one store
        from probe.measure.beside import evaluation_note, measure_beside, resolve_grid

        print(evaluation_note(resolve_grid(args.beside)))
        grid, summary = measure_beside(args.path, args.beside, out=args.out, probes=probes, device=args.device,
                                       splits=splits, force=args.force, **external)
        print(f"measured {grid['runs']} model(s) of {grid['study']} beside it: {grid['computed']} probe results "
              f"computed, {grid['skipped']} already stored -> {grid['store']}")
    else:
        summary = measure(args.path, probes=probes, splits=splits, out=args.out, force=args.force,
                          device=args.device, anchors=getattr(args, "anchors", None), **external)
    if summary.get("load"):
        print(summary["load"])
    for line in summary.get("eval_data") or []:
        print(line)
    print(f"measured {summary['runs']} model(s) of {summary['study']}: {summary['computed']} probe results "
          f"computed, {summary['skipped']} already stored"
          + (f", {len(summary['failed'])} FAILED (stored, see the report)" if summary["failed"] else "")
          + f" -> {summary['store']}")
    if "anchors" in summary:
        a = summary["anchors"]
        print(f"anchors: {len(a['anchor_models'])} anchor models, {a.get('computed', 0)} results computed, "
              f"{a.get('skipped', 0)} already stored" + (f", {len(a['failed'])} FAILED" if a["failed"] else ""))
    for failure in summary["failed"]:
        print(f"probe: failed: {failure['model']}: {failure['probe']}: {failure['cause']}", file=sys.stderr)
    return EXIT_SOME_FAILED if summary["failed"] else 0


def layers_cli(args: argparse.Namespace) -> int:
    """``probe layers WEIGHTS --arch FILE.py:Class``: every module that runs, in forward order, with its output
    shape; ``*`` marks the default probe points."""
    from probe.models.trace import trace_modules

    model = load_for_cli(args)
    points = set(model.probe_points()) if hasattr(model, "probe_points") else set()
    size = args.input_size
    report = getattr(model, "load_report", None)
    if report is not None:
        print(report.summary())
    print(f"{'':1} {'module':<40} {'type':<22} {'output shape':<22} params")
    for row in trace_modules(model, (1, 3, size, size)):
        shape = "×".join(str(s) for s in row.shape) if row.shape else "-"
        calls = f" (×{row.calls})" if row.calls > 1 else ""
        print(f"{'*' if row.name in points else ' '} {row.name:<40} {row.kind:<22} {shape + calls:<22} "
              f"{row.params}")
    print(f"* = default probe points ({len(points)}); pass others with --layers a,b / layers = [...]")
    return 0


def load_for_cli(args: argparse.Namespace) -> Any:
    from pathlib import Path

    path = Path(args.path)
    opts = external_options(args)
    if path.suffix.lower() == ".toml":
        from probe.models.card import read_card

        card = read_card(path)
        from probe.models.card import CONVENTIONS

        conventions = {k: v for k, v in opts.items() if k in CONVENTIONS}
        return card.load(device=args.device or "cpu", **conventions)
    from probe.models.checkpoint import load_model

    return load_model(path, device=args.device or "cpu", **opts)
