"""``probe report DIR``: regenerate every figure and the HTML report from the stores in DIR."""

from __future__ import annotations

import argparse


def run_cli(args: argparse.Namespace) -> int:
    from probe.report.build import build_report

    out = build_report(args.path)
    print(f"report: {out}")
    return 0
