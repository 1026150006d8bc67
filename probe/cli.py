"""The ``probe`` command line. Sub-commands import their implementation lazily (``probe --help`` is fast).

Errors from bad input (:class:`probe.errors.ProbeError`) print one line and exit with status 2;
``--debug`` shows the traceback instead. Ctrl-C, SIGTERM and SIGHUP stop every command alike
(:mod:`probe.interrupt`): one line, exit status 128 + signal (130, 143, 129). A closed stdout
(``probe ... | head``) ends the command quietly with status 141.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from probe import __version__
from probe.errors import ProbeError, one_line


def _handler(target: str):
    def run(args: argparse.Namespace) -> int | None:
        module, _, attr = target.partition(":")
        return getattr(import_module(module), attr)(args)

    return run


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    # Sub-commands accept the flags too; SUPPRESS keeps their default from overriding the top-level one.
    default = False if top else argparse.SUPPRESS
    parser.add_argument("--quiet", "-q", action="store_true", default=default, help="no progress bars")
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def _model_options(p: argparse.ArgumentParser) -> None:
    """The options that say how to build, load and call an external network (shared by measure/layers)."""
    p.add_argument("--arch", default=None, metavar="FILE.py:Class",
                   help="your network class (FILE.py:Class or package.module:Class); importing it runs its code")
    p.add_argument("--arch-kwargs", default=None, metavar="JSON", help="constructor keyword arguments (JSON)")
    p.add_argument("--code-root", default=None, metavar="REPO",
                   help="a folder put first on sys.path while --arch is imported, for package-style imports "
                        "(from model import common); with --options: the repository whose *_arch.py files "
                        "define network_g's type (default: found above the option file)")
    p.add_argument("--arch-args", choices=["kwargs", "namespace", "dict"], default=None,
                   help="constructor style: Class(**JSON) (default), Class(argparse.Namespace(**JSON)), Class(JSON)")
    p.add_argument("--family", default=None, help="one of probe's families, for a foreign checkpoint of it")
    p.add_argument("--size", default=None, help="size preset of --family")
    p.add_argument("--output", default=None, metavar="PATH",
                   help="dotted path of the restored image in nested tuple/list/dict outputs: -1, 1.-1, a key "
                        "(default: chosen on a synthetic probe batch and reported)")
    p.add_argument("--output-is", choices=["image", "layer"], default=None,
                   help="'layer' if the network predicts the degradation (restored = input − output; default: "
                        "detected and reported)")
    p.add_argument("--input-range", type=float, choices=[1.0, 255.0], default=None,
                   help="value range the network expects (1 or 255)")
    p.add_argument("--pad-multiple", type=int, default=None, metavar="N", help="pad H, W to a multiple of N")
    p.add_argument("--pad-mode", choices=["reflect", "zero"], default=None)
    p.add_argument("--tile", type=int, default=None, metavar="N", help="run large images in N×N tiles")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="N")
    p.add_argument("--dtype", default=None, help="float32 (default) or keep (the checkpoint's precision)")
    p.add_argument("--allow-missing", action="append", default=[], metavar="PATTERN",
                   help="non-strict load: tensors matching PATTERN (fnmatch) may keep their initial values")
    p.add_argument("--layers", default=None, help="probe points: comma-separated module names")
    p.add_argument("--device", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe",
        description="Shortcut-learning diagnostics for image-restoration networks "
        "(synthesise degradations, train grids, probe models, draw reports).",
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synth", help="synthesise degraded pairs and draw a contact sheet")
    _common(p)
    p.add_argument("--background", default="natural", help="background source (see `probe list`)")
    p.add_argument("--background-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the background source, e.g. complexity=0.5 or root=/data/div2k")
    p.add_argument("--degradation", default="rain", help="degradation type (see `probe list`)")
    p.add_argument("--preset", default=None, help="degradation preset (rain: small, medium, large, random)")
    p.add_argument("--n", type=int, default=8, help="number of images")
    p.add_argument("--patch", type=int, default=128, help="patch size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/synth", help="output directory")
    p.set_defaults(func=_handler("probe.data.synth:run_cli"))

    p = sub.add_parser("train", help="train one model from a TOML config")
    _common(p)
    p.add_argument("config", help="train config (TOML)")
    p.add_argument("--out", default=None, help="run directory (default: trained_models/<name>)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 (overrides the config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.iterations=50")
    p.set_defaults(func=_handler("probe.train.cli:run_cli"))

    p = sub.add_parser("grid", help="run or inspect a study grid")
    _common(p)
    gsub = p.add_subparsers(dest="grid_command", metavar="ACTION")
    g = gsub.add_parser("run", help="train every cell of a study (resumable)")
    _common(g)
    g.add_argument("spec", help="study spec, e.g. analyses/derain_complexity.toml")
    g.add_argument("--out", default=None, help="output directory (default: trained_models/<study>)")
    g.add_argument("--executor", choices=["local", "dask", "batched"], default="local",
                   help="local process pool, dask, or batched (many small models in one vmapped step)")
    g.add_argument("--gpus", default=None, help="CUDA devices to spread the cells over, e.g. 0,1")
    g.add_argument("--workers", type=int, default=None, help="parallel workers (default: machine-sized)")
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    g.add_argument("--retries", type=int, default=2,
                   help="times Dask reschedules a cell whose worker died (default 2)")
    g.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to reach --scheduler before giving up (default 10)")
    g.add_argument("--device", default=None, help="device for every cell (overrides the spec)")
    g.add_argument("--scale", default=None, metavar="RUNG",
                   help="rung of the spec's scale ladder: demo (default), long, gpu, paper, … (docs/scale.md)")
    g.add_argument("--dry-run", action="store_true",
                   help="list the cells, and every rung's expected CPU and GPU time, and exit")
    g.add_argument("--verbose", "-v", action="store_true", help="per-cell progress bars")
    g.set_defaults(func=_handler("probe.study:grid_run_cli"))
    g = gsub.add_parser("status", help="done / running / failed / pending cells of a grid")
    _common(g)
    g.add_argument("out", help="grid output directory, e.g. trained_models/derain_complexity")
    g.set_defaults(func=_handler("probe.grid.cli:status_cli"))

    p = sub.add_parser("measure", help="run probes on a run, a grid, a checkpoint of your network or a model card",
                       description="Measure into one store. PATH: a run directory, a grid directory, a "
                       "checkpoint (.pth/.pt/.ckpt/.safetensors, with --arch or --family) or a model card "
                       "(.toml). Exit status: 0 done, 2 bad input, 3 some probes/models failed (stored, "
                       "listed, the rest measured).")
    _common(p)
    p.add_argument("path", nargs="?", default=None,
                   help="run dir, grid dir, checkpoint file or model card (.toml); with --options: the weights "
                        "(default: the option file's path.pretrain_network_g)")
    p.add_argument("--probes", default=None, help="comma-separated probe names (default: the study's)")
    p.add_argument("--splits", default=None, help="comma-separated split names (default: all)")
    p.add_argument("--out", default=None, help="result store (default: reports/<study>/results.h5)")
    p.add_argument("--force", action="store_true", help="recompute results already in the store")
    p.add_argument("--eval-folder", action="append", default=[], metavar="NAME=DIR",
                   help="a folder of real pairs as split NAME (repeat: id=..., ood=...); default: the study's "
                        "synthetic splits")
    p.add_argument("--eval-patch", type=int, default=None, metavar="N",
                   help="centre crop of real pairs in pixels (default 128; 0 = full size)")
    p.add_argument("--skip-broken", action="store_true", help="skip broken pairs with a warning")
    p.add_argument("--eval-layout", action="append", default=[], metavar="NAME=LAYOUT",
                   help="layout of --eval-folder NAME where names cannot reveal it: side_by_side (rainy left, "
                        "as Rain1200), side_by_side:clean_left (as Rain800), sorted; default: detected")
    p.add_argument("--probe-params", default=None, metavar="JSON",
                   help="probe parameters over the study's, e.g. '{\"cem\": {\"context\": null}}' (whole "
                        "images), '{\"attribution\": {\"n_images\": 8}}' (docs/probes.md)")
    p.add_argument("--codebase-metrics", default=None, metavar="crop_border=N,test_y_channel=BOOL",
                   help="also score --eval-folder splits the way your code base does (8-bit, crop_border px "
                        "cut from each edge, Y channel): psnr_codebase / ssim_codebase beside probe's own")
    p.add_argument("--name", default=None, help="display name / model id of an external model")
    p.add_argument("--options", default=None, metavar="YAML",
                   help="a BasicSR option file (options/test_X.yml): network, weights, test sets and metric "
                        "conventions from it (PATH is then optional)")
    p.add_argument("--beside", default=None, metavar="GRID",
                   help="measure a trained grid first into the same store, then your network on its splits: "
                        "'reference' (the shipped trained_models/reference/derain_ntrend_long) or a grid directory")
    p.add_argument("--anchors", default=None,
                   help="also measure calibration anchors, comma-separated: identity,oracle,untrained,single")
    _model_options(p)
    p.set_defaults(func=_handler("probe.measure:run_cli"))

    p = sub.add_parser("layers", help="list every module of a network with its output shape, in forward order")
    _common(p)
    p.add_argument("path", help="checkpoint file (with --arch or --family), run dir or model card (.toml)")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="side of the test input (default: the size the load check found the network accepts)")
    _model_options(p)
    p.set_defaults(func=_handler("probe.measure.cli:layers_cli"))

    p = sub.add_parser("report", help="draw figures and the HTML report from result stores")
    _common(p)
    p.add_argument("path", help="report directory holding results.h5, e.g. reports/derain_complexity")
    p.set_defaults(func=_handler("probe.report.cli:run_cli"))

    p = sub.add_parser("demo", help="the default study end to end: grid, measure, report")
    _common(p)
    p.add_argument("--spec", default=None,
                   help="study spec: a path or a bundled study name such as derain_ntrend (default: "
                        "derain_complexity)")
    p.add_argument("--scale", default=None, metavar="RUNG",
                   help="rung of the spec's scale ladder: demo (default), long, gpu, paper, … (docs/scale.md)")
    p.add_argument("--dry-run", action="store_true", help="print every rung's expected CPU and GPU time and exit")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=_handler("probe.demo:run_cli"))

    import_module("probe.train.prior_cli").add_parser(sub, _common)  # `probe prior train`

    p = sub.add_parser("list", help="list registered families, backgrounds, degradations and probes")
    _common(p)
    p.set_defaults(func=_list)
    return parser


def _list(args: argparse.Namespace) -> int:
    from probe.data.backgrounds import BACKGROUNDS
    from probe.data.degradations import DEGRADATIONS
    from probe.models import FAMILIES
    from probe.probes import PROBES

    for title, registry in [("model families", FAMILIES), ("background sources", BACKGROUNDS),
                            ("degradations", DEGRADATIONS), ("probes", PROBES)]:
        print(f"{title}: {', '.join(registry.names())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None or not hasattr(args, "func"):
        parser.print_help()
        return 0 if getattr(args, "command", None) is None else 2
    from probe.interrupt import describe, exit_code, install
    from probe.progress import set_quiet

    install()  # SIGTERM / SIGHUP end the command like Ctrl-C (probe.interrupt)
    set_quiet(args.quiet)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe (`probe ... | head`) shows here, inside the handler below
    except ProbeError as exc:
        if args.debug:
            raise
        print(f"probe: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as probe.interrupt.Terminated
        kept = getattr(exc, "detail", None) or "; finished results are kept, a rerun resumes the rest"
        print(f"probe: interrupted ({describe(exc)}){kept}", file=sys.stderr)
        return exit_code(exc)
    except BrokenPipeError:
        return _closed_stdout()
    return int(code or 0)


def _closed_stdout() -> int:
    """The reader of our stdout went away (``probe ... | head``): end quietly with the status of a process ended
    by SIGPIPE (141), pointing stdout at /dev/null so the interpreter's final flush does not complain."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
