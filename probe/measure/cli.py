"""``probe measure`` and ``probe layers`` on the command line.

Exit status of ``probe measure``: 0 all done; 2 bad input (one line: a missing file, an unknown option, a
single checkpoint that does not load); 3 some probes (or grid models) failed — they are stored with their
cause, listed on stderr and in the report, and everything else was measured.
"""

from __future__ import annotations

import argparse
import json
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
    opts = {"arch": args.arch, "arch_kwargs": args.arch_kwargs, "arch_args": getattr(args, "arch_args", None),
            "family": args.family, "size": args.size,
            "output": _output(args.output), "output_is": args.output_is, "input_range": args.input_range,
            "pad_multiple": args.pad_multiple, "pad_mode": args.pad_mode, "tile": args.tile,
            "tile_overlap": args.tile_overlap, "dtype": args.dtype,
            "layers": _names(args.layers, "--layers"), "code_root": getattr(args, "code_root", None)}
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
    if getattr(args, "options", None):
        args.path = basicsr_external(args, external)
    elif args.path is None:
        raise ConfigError("measure: PATH is required (a run, a grid, a checkpoint or a model card), or --options")
    if getattr(args, "eval_layout", None):
        from probe.probes.evalfolders import parse_layout_args

        external["eval_layout"] = parse_layout_args(args.eval_layout, external.get("eval_folders") or {})
    if getattr(args, "probe_params", None):
        try:
            external["probe_params"] = json.loads(args.probe_params)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--probe-params: not valid JSON ({exc.msg} at character {exc.pos}); "
                              'expected e.g. \'{"cem": {"context": null}}\'') from None
    if getattr(args, "codebase_metrics", None):
        if not external.get("eval_folders"):
            raise ConfigError("--codebase-metrics applies to --eval-folder splits (or --options test sets); "
                              "none given")
        external["metric_conventions"] = parse_codebase_metrics(args.codebase_metrics)
    if args.eval_patch is not None:
        external["eval_patch"] = args.eval_patch  # 0: whole images
    if args.skip_broken:
        external["skip_broken"] = True
    if args.name:
        external["name"] = args.name
    if getattr(args, "beside", None):  # the grid first, then the network, into one store
        from probe.measure.beside import default_probes, evaluation_note, measure_beside, readings, resolve_grid

        grid_dir = resolve_grid(args.beside)
        print(evaluation_note(grid_dir))
        if probes is None:
            probes = default_probes(grid_dir)
            added = [n for n in readings(grid_dir) if n in probes]
            print(f"probes: {', '.join(probes)} (the grid study's"
                  + (f", and {', '.join(added)}: your network's reading among the grid's models" if added else "")
                  + "; --probes to choose)")
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
    print(f"measured {_measured_what(summary, getattr(args, 'beside', None))}: {summary['computed']} probe results "
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


def _measured_what(summary: dict[str, Any], beside: str | None) -> str:
    """What the summary line says was measured: ``"30 model(s) of derain_ntrend"`` for a grid or run,
    ``"NAME (your network) beside derain_ntrend"`` / ``"NAME (your network)"`` for one external network."""
    if not summary.get("model_id"):
        return f"{summary['runs']} model(s) of {summary['study']}"
    return f"{summary['model_id']} (your network)" + (f" beside {summary['study']}" if beside else "")


def basicsr_external(args: argparse.Namespace, external: dict[str, Any]) -> str:
    """Fill ``external`` from a BasicSR option file (``--options``); returns the weights path to measure.

    Command-line options win over the file's; each ``datasets.test_*`` set becomes an evaluation split whose
    pairs (BasicSR's own pairing rule) are listed in ``<store folder>/basicsr_pairs/<split>.csv``."""
    from pathlib import Path

    from probe.models.basicsr_options import pair_list, read_options

    if args.arch or args.family:
        raise ConfigError(f"--options {args.options}: the option file names the network; drop --arch/--family")
    opts = read_options(args.options, args.code_root)
    weights = args.path or (str(opts.weights) if opts.weights else None)
    if weights is None:
        raise ConfigError(f"{args.options}: no path.pretrain_network_g; pass the weights as PATH")
    external.setdefault("name", opts.name)
    external["arch"] = opts.arch
    external["arch_kwargs"] = {**opts.kwargs, **(json_object(args.arch_kwargs) or {})}
    external["weights_key"] = opts.weights_key
    if opts.test_sets and "eval_folders" not in external:
        out = Path(args.out) if args.out else Path("reports") / "external" / "results.h5"
        external["eval_folders"] = {
            split: str(pair_list(lq, gt, opts.filename_tmpl.get(split, "{}"),
                                 out.parent / "basicsr_pairs" / f"{split}.csv"))
            for split, (lq, gt) in opts.test_sets.items()}
        args.out = str(out)
    external["extra_info"] = {"basicsr_options": str(Path(args.options).resolve()),
                              "basicsr_metrics": json.dumps(opts.conventions(), sort_keys=True)}
    if opts.test_sets and args.eval_patch is None and not args.eval_folder:
        external["eval_patch"] = 0
        print(f"{args.options}: its test sets are measured on whole images, as BasicSR tests "
              "(--eval-patch N for centre crops)")
    from probe.codebase_metrics import metric_conventions

    found = metric_conventions(opts.conventions())  # PSNR / SSIM among val.metrics (others are not computed)
    if found and opts.test_sets and not args.eval_folder:
        external["metric_conventions"] = opts.conventions()
        shown = ", ".join(f"{k}: crop_border={c}, test_y_channel={y}" for k, (c, y) in found.items())
        print(f"{args.options}: its test sets are also scored with the code base's own metrics ({shown}) as "
              f"{' / '.join(f'{k}_codebase' for k in found)}, beside probe's RGB, uncropped PSNR / SSIM")
    elif opts.metrics:
        print(f"{args.options}: the code base's metric conventions are recorded with the model; its PSNR / SSIM "
              "are computed on its own test sets only (" + ("none used here" if found else "none of its "
              "val.metrics is PSNR or SSIM") + ")")
    return weights


def parse_codebase_metrics(text: str) -> dict[str, Any]:
    """``"crop_border=4,test_y_channel=true"`` → the ``val.metrics`` form for PSNR and SSIM; one
    :class:`ConfigError` line for anything else."""
    from probe.codebase_metrics import check_conventions

    values: dict[str, Any] = {"crop_border": 0, "test_y_channel": False}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ConfigError(f"--codebase-metrics {text!r}: {part!r} is not crop_border=N or test_y_channel=BOOL")
        value = value.strip().lower()
        if key == "crop_border":
            if not value.isdigit():
                raise ConfigError(f"--codebase-metrics: crop_border = {value!r} must be an integer >= 0")
            values[key] = int(value)
        elif value in {"true", "1", "yes", "false", "0", "no"}:
            values[key] = value in {"true", "1", "yes"}
        else:
            raise ConfigError(f"--codebase-metrics: test_y_channel = {value!r} must be true or false")
    check_conventions(values["crop_border"], values["test_y_channel"])
    return {m: {"type": f"calculate_{m}", **values} for m in ("psnr", "ssim")}


def json_object(text: str | None) -> dict[str, Any] | None:
    from probe.models.arch import parse_kwargs

    return parse_kwargs(text) if text else None


def layers_cli(args: argparse.Namespace) -> int:
    """``probe layers WEIGHTS --arch FILE.py:Class``: every module that runs, in forward order, with its output
    shape; ``*`` marks the default probe points."""
    from probe.models.trace import trace_modules

    model = load_for_cli(args)
    points = set(model.probe_points()) if hasattr(model, "probe_points") else set()
    choice = getattr(model, "output_choice", None)
    size = args.input_size or (choice.size if choice is not None else 64)
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
        conventions = {k: v for k, v in opts.items() if k in ("output", "output_is", "input_range", "pad_multiple",
                                                              "pad_mode", "tile", "tile_overlap", "layers",
                                                              "arch_args", "code_root")}
        return card.load(device=args.device or "cpu", **conventions)
    from probe.models.checkpoint import load_model

    return load_model(path, device=args.device or "cpu", **opts)
