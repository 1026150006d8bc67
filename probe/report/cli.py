"""``probe report DIR``: regenerate every figure and the HTML report from the stores in DIR."""

from __future__ import annotations

import argparse


def run_cli(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probe.fsutil import require_writable
    from probe.report.build import build_report

    path = Path(args.path)
    if path.exists():  # a missing folder is build_report's one-line error
        require_writable(path if path.is_dir() else path.parent, "report folder")
    out = build_report(args.path)
    print(f"report: {out}")
    return 0
