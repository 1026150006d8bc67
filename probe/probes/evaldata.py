"""Build the fixed evaluation set of a run from its recorded config (held-out backgrounds, declared splits).

::

    from probe.probes.evaldata import eval_data_for_run
    data = eval_data_for_run("trained_models/derain_complexity/<cell>")
    list(data.splits)          # ['id', 'ood', ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.probes.base import EvalData


def eval_info(config: dict[str, Any], n_images: int | None = None) -> dict[str, Any]:
    """The JSON description that identifies an evaluation set (stored with every result)."""
    data = config.get("data") or {}
    ev = config.get("eval") or {}
    background = ev.get("background") or data.get("background")
    options = ev.get("background_options")
    if options is None:
        options = data.get("background_options", {}) if ev.get("background") is None else {}
    return {
        "background": background,
        "background_options": options or {},
        "n_images": int(n_images or ev.get("n_images") or 16),
        "patch": int(ev.get("patch") or data.get("patch") or 64),
        "seed": int(ev.get("seed", 12345)),
        "splits": ev.get("splits") or {"id": config.get("degradation") or {"type": "rain", "preset": "small"}},
    }


def eval_data_from_info(info: dict[str, Any]) -> EvalData:
    from probe.data.degradations import make_degradation
    from probe.data.paired import evaluation_set

    splits = evaluation_set(info["background"], info["splits"], n_images=info["n_images"], patch=info["patch"],
                            seed=info["seed"], background_options=info["background_options"])
    clean = next(iter(splits.values())).clean
    return EvalData(splits=splits, degradations={k: make_degradation(v) for k, v in info["splits"].items()},
                    alt_clean=clean.roll(1, dims=0), info=info, seed=info["seed"])


_CACHE: dict[str, EvalData] = {}


def eval_data_for_run(run: str | Path | dict[str, Any], n_images: int | None = None) -> EvalData:
    """The evaluation set of a run directory (or of a ``run.json`` record); cached per description."""
    if not isinstance(run, dict):
        run = json.loads((Path(run) / "run.json").read_text(encoding="utf-8"))
    info = eval_info(run.get("config") or {}, n_images)
    key = json.dumps(info, sort_keys=True)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = eval_data_from_info(info)
    return _CACHE[key]
