"""``probe train CONFIG.toml [--out DIR] [--device D] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def run_cli(args: argparse.Namespace) -> int:
    from probe.progress import is_quiet
    from probe.train.config import TrainConfig
    from probe.train.trainer import train

    config = TrainConfig.from_toml(args.config, overrides=args.set)
    out = Path(args.out) if args.out else Path("trained_models") / config.name
    from probe.fsutil import require_writable

    require_writable(out, "run folder")
    record = train(config, out, device=args.device)
    if not is_quiet():
        metrics = record.get("metrics") or {}
        shown = ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if isinstance(v, float))
        print(f"run {out}: {record['status']} ({record.get('wall_time_s', 0):.1f} s) {shown}")
    return 0
