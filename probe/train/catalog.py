"""The catalog: one row per run directory found under a folder (recursively).

::

    import probe
    runs = probe.catalog("trained_models/derain_complexity")
    runs[runs.status == "done"].groupby("background").psnr_ood.mean()
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.errors import DataError
from probe.train.rundir import RECORD, RunDir

BASE_COLUMNS = ["run_id", "path", "family", "size", "background", "n_backgrounds", "degradation",
                "train_range", "seed", "status"]


def find_runs(root: str | Path) -> list[Path]:
    """Run directories (folders holding a ``run.json``) under ``root``, sorted."""
    root = Path(root)
    if (root / RECORD).is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    return sorted(p.parent for p in root.rglob(RECORD))


def describe_degradation(spec: dict[str, Any]) -> str:
    """A short human label: ``rain/small``, ``rain(angle=[[-10, 10]])``, ``noise/gaussian``."""
    spec = dict(spec or {})
    kind = spec.pop("type", "?")
    preset = spec.pop("preset", None) or spec.pop("kind", None)
    label = f"{kind}/{preset}" if preset else str(kind)
    if spec:
        label += "(" + ", ".join(f"{k}={v}" for k, v in sorted(spec.items())) + ")"
    return label


def catalog_row(run: RunDir, root: Path) -> dict[str, Any]:
    record = run.read()
    config = record.get("config") or {}
    data = config.get("data") or {}
    model = record.get("model") or config.get("model") or {}
    degradation = config.get("degradation") or {}
    try:
        run_id = str(run.path.relative_to(root)) if run.path != root else run.path.name
    except ValueError:
        run_id = run.path.name
    row: dict[str, Any] = {
        "run_id": run_id,
        "path": str(run.path),
        "family": _family_label(model),
        "size": model.get("size"),
        "background": data.get("background"),
        "n_backgrounds": data.get("n_backgrounds"),
        "degradation": describe_degradation(degradation),
        "train_range": json.dumps(degradation, sort_keys=True),
        "seed": record.get("seed", config.get("seed")),
        "status": run.status(),
        "weights_sha256": record.get("weights_sha256"),
        "wall_time_s": record.get("wall_time_s"),
        "error": record.get("error"),
    }
    for key, value in (record.get("axes") or {}).items():
        row.setdefault(key, value if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True))
    for key, value in (record.get("metrics") or {}).items():
        row[key] = value
    return row


def catalog(root: str | Path = "trained_models"):
    """A pandas DataFrame with one row per run under ``root``: config, grid axes, status, final metrics."""
    import pandas as pd

    root = Path(root)
    rows = []
    for path in find_runs(root):
        try:
            rows.append(catalog_row(RunDir(path), root))
        except Exception as exc:  # a corrupt record is listed, not fatal
            rows.append({"run_id": path.name, "path": str(path), "status": "corrupt", "error": str(exc)})
    frame = pd.DataFrame(rows)
    for column in BASE_COLUMNS:
        if column not in frame:
            frame[column] = None
    rest = [c for c in frame.columns if c not in BASE_COLUMNS]
    return frame[BASE_COLUMNS + rest].reset_index(drop=True)


def _family_label(model: dict[str, Any]) -> Any:
    """The family name; for a user architecture (family ``external``) its class name, so that two
    architectures trained on one grid are two families in the report."""
    arch = (model.get("kwargs") or {}).get("arch") if model.get("family") == "external" else None
    return str(arch).rpartition(":")[2] if arch else model.get("family")
