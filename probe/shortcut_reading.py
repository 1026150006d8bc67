"""The shortcut reading of one external network (or anchor): where it sits among the grid's trained models.

The grid's scores are never moved: the reading places the network's weighted indicator
(:data:`probe.shortcut.WEIGHTS`: ``attribution_on_rain``, the share of its removal attributed to the rain on
the study's common probe set) on the distribution of the grid's trained models' values:

* ``percentile`` = 100 · (#{grid < x} + ½ #{grid = x}) / #grid (mid-rank), 0–100;
* ``percentile_lo`` / ``percentile_hi`` = the 2.5 / 97.5 % quantiles of the percentile of the mean share over
  2000 bootstrap resamples of its images (seed 0) — the uncertainty of its own number; NaN (with the reason in
  ``ci``) when its per-image shares are not available;
* ``verdict``: ≥ 75 → "relies on the rain more than most of the grid's models (shortcut-like)", ≤ 25 →
  "relies on the background content more than most of the grid's models (content-like)", else "within the
  grid's range"; "uncertain" is added when the CI crosses 50 and spans both ends; the anchors' own percentiles
  are appended (``identity 0, oracle 12`` …) so a reader sees the scale's ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_BOOT = 2000
HIGH, LOW = 75.0, 25.0


def _percentile(values: np.ndarray, x: float) -> float:
    if not len(values) or not np.isfinite(x):
        return float("nan")
    return float(100.0 * ((values < x).sum() + 0.5 * (values == x).sum()) / len(values))


def _per_image(model_id: str, store: Any, result: Any, split: str) -> np.ndarray | None:
    """Per-image probe-set shares (``image_metrics`` of the attribution, window ``on``), or None."""
    arr = None
    if result is not None:
        arr = getattr(result, "arrays", {}).get("image_metrics")
    if arr is None:
        try:
            from probe.store import list_entries, read_array

            entries = list_entries(store.path)
            rows = entries[(entries["model_id"] == model_id) & (entries["probe"] == "attribution")
                           & entries["eval"].astype(str).str.contains(f'"{split}"', regex=False)]
            if rows.empty:
                return None
            row = rows.iloc[-1]
            import json

            arr = read_array(store.path, model_id, "attribution", "image_metrics", params=row["params"],
                             eval_info=json.loads(row["eval"]))
        except Exception:  # noqa: BLE001 - the CI is then NaN with its reason
            return None
    try:
        sel = arr.sel(metric="share_on_rain", window="on")
        if "split" in sel.dims:
            sel = sel.sel(split=split) if split in sel.coords["split"].values else sel.isel(split=0)
        values = np.asarray(sel.values, dtype=float).ravel()
    except Exception:  # noqa: BLE001
        return None
    values = values[np.isfinite(values)]
    return values if len(values) else None


def reading(model_id: str, scores: Any, store: Any, result: Any = None, name: str = "attribution_on_rain",
            split: str = "probe_set") -> dict[str, Any]:
    """The reading of ``model_id`` from :func:`probe.shortcut.shortcut_scores` output (see the module):
    indicator ``name`` (the weighted one), per-image shares from ``result`` (this call's probe-set
    attribution) or the committed store, on split ``split``."""
    grid = scores.loc[~scores["anchor"], name].dropna().to_numpy(dtype=float)
    x = float(scores.loc[model_id, name])
    pct = _percentile(grid, x)
    lo = hi = float("nan")
    ci = "no per-image shares stored"
    shares = _per_image(model_id, store, result, split)
    if shares is not None and len(grid):
        rng = np.random.default_rng(0)
        means = shares[rng.integers(0, len(shares), size=(N_BOOT, len(shares)))].mean(axis=1)
        pcts = np.array([_percentile(grid, m) for m in means])
        lo, hi = (float(v) for v in np.quantile(pcts, [0.025, 0.975]))
        ci = f"95% bootstrap over {len(shares)} images"
    anchors = {}
    for other in scores.index[scores["anchor"]]:
        if other != model_id and np.isfinite(scores.loc[other, name]):
            anchors[str(other)] = _percentile(grid, float(scores.loc[other, name]))
    return {"indicator": name, "value": x, "percentile": pct, "percentile_lo": lo, "percentile_hi": hi,
            "ci": ci, "n_grid": int(len(grid)), "verdict": verdict(pct, lo, hi, anchors)}


def verdict(pct: float, lo: float, hi: float, anchors: dict[str, float] | None = None) -> str:
    """Plain words for a percentile (see the module docstring)."""
    if not np.isfinite(pct):
        return "no reading: the network has no probe-set attribution"
    if pct >= HIGH:
        text = "relies on the rain more than most of the grid's models (shortcut-like)"
    elif pct <= LOW:
        text = "relies on the background content more than most of the grid's models (content-like)"
    else:
        text = "within the grid's range"
    if np.isfinite(lo) and np.isfinite(hi) and lo <= LOW and hi >= HIGH:
        text += "; uncertain (the CI spans the grid)"
    if anchors:
        text += "; anchors: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(anchors.items()))
    return text


def write_reading(result: Any, read: dict[str, Any]) -> None:
    """Add the reading's metric rows (split ``id``) to a shortcut ``ProbeResult``."""
    for key in ("percentile", "percentile_lo", "percentile_hi"):
        result.add_metric("id", key, read[key], indicator=read["indicator"], verdict=read["verdict"], ci=read["ci"])
