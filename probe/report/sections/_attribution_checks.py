"""The attribution section's second half: causal effect maps beside LAM/IG, and every map's faithfulness.

From the store alone (:mod:`probe.probes.cem`, :mod:`probe.probes.attribution`):

- :func:`faithfulness_table`: per model, method, split and window the deletion / insertion gain over random
  orders (mean over images, 95% bootstrap CI over images) and the verdict — ``no better than random`` where
  the probe flagged it;
- :func:`cem_table`: per model the CEM indicators with their CIs;
- :func:`faithfulness_figure`: deletion and insertion curves (map order vs random orders, mean over images)
  per method for up to :data:`MAX_MODELS` models;
- :func:`cem_figure`: the causal effect map of the first image per model (red: the block's content helps
  the ROI's restoration, blue: it hurts; green box: the ROI).

All models are shown — grid models, external networks and anchors — because faithfulness and the anchors'
known CEM are what make the maps trustworthy.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from probe.report.context import NON_DEGRADED, STUDY_MODEL_IDS

MAX_MODELS = 6
FAITH = ("deletion_gain", "insertion_gain")
CEM_INDICATORS = [("rain_share", "rain share"), ("background_dependence", "background dependence"),
                  ("rain_dependence", "rain dependence"), ("effect_reach", "effect reach (px)"),
                  ("effect_range", "effect range (dB)"), ("positive_fraction", "positive blocks"),
                  ("negative_fraction", "negative blocks"), ("roi_psnr", "ROI PSNR (dB)")]
PROBES = ("attribution", "cem")


def _rows(metrics: pd.DataFrame | None, probes=PROBES) -> pd.DataFrame:
    if metrics is None or len(metrics) == 0 or "probe" not in metrics:
        return pd.DataFrame()
    frame = metrics[metrics["probe"].isin(probes) & ~metrics["model_id"].isin(STUDY_MODEL_IDS)
                    & ~metrics["split"].isin(NON_DEGRADED)].copy()
    for key in ("window", "method", "flag"):
        if key not in frame:
            frame[key] = ""
        frame[key] = frame[key].astype(object).where(frame[key].notna(), "").astype(str)
    for key in ("ci_low", "ci_high"):
        if key not in frame:
            frame[key] = np.nan
    return frame


def faithfulness_table(metrics: pd.DataFrame | None) -> pd.DataFrame:
    """One row per model × probe × method × split × window × score (see module doc)."""
    frame = _rows(metrics)
    frame = frame[frame["metric"].isin(FAITH)] if not frame.empty else frame
    if frame.empty:
        return pd.DataFrame()
    out = frame[["model_id", "probe", "method", "split", "window", "metric", "value", "ci_low", "ci_high",
                 "flag"]].copy()
    out["verdict"] = np.where(out["flag"].str.startswith("no better"), "no better than random",
                              np.where(out["value"].notna(), "better than random", out["flag"]))
    return out.drop(columns="flag").sort_values(["model_id", "probe", "method", "split", "window", "metric"]
                                                ).reset_index(drop=True)


def cem_table(metrics: pd.DataFrame | None) -> pd.DataFrame:
    """Per model × split × window: the CEM indicators ``value [ci_low, ci_high]`` (flags shown as text)."""
    frame = _rows(metrics, ("cem",))
    frame = frame[frame["metric"].isin([m for m, _ in CEM_INDICATORS])] if not frame.empty else frame
    if frame.empty:
        return pd.DataFrame()

    def cell(row) -> str:
        if not np.isfinite(row["value"]):
            return f"n/a ({row['flag']})" if row["flag"] else "n/a"
        ci = (f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]"
              if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]) else "")
        return f"{row['value']:.3g}{ci}"

    frame = frame.assign(cell=frame.apply(cell, axis=1))
    wide = frame.pivot_table(index=["model_id", "split", "window"], columns="metric", values="cell",
                             aggfunc="first")
    cols = [(m, label) for m, label in CEM_INDICATORS if m in wide.columns]
    return wide[[m for m, _ in cols]].rename(columns=dict(cols)).reset_index()


def _entries(frame: pd.DataFrame, probe: str) -> list[tuple[str, dict[str, Any]]]:
    part = frame[frame["probe"] == probe].drop_duplicates("model_id").sort_values("model_id")
    out = []
    for _, row in part.head(MAX_MODELS).iterrows():
        select: dict[str, Any] = {"params": row["params"]} if "params" in row else {}
        if "eval" in row and isinstance(row["eval"], str):
            select["eval_info"] = json.loads(row["eval"])
        out.append((row["model_id"], select))
    return out


def faithfulness_figure(store, metrics: pd.DataFrame | None):
    """Deletion (left) and insertion (right) curves; solid: map order, dotted: random orders."""
    import matplotlib.pyplot as plt

    from probe.store import read_array

    frame = _rows(metrics)
    frame = frame[frame["metric"].isin(FAITH)] if not frame.empty else frame
    if frame.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    k = 0
    for probe in PROBES:
        for model_id, select in _entries(frame, probe):
            try:
                arr = read_array(store, model_id, probe, "faithfulness", **select)
            except Exception:  # noqa: BLE001 - an older result without curves: skip it
                continue
            a = arr.isel(split=-1, window=0)
            q = a.coords["fraction"].values
            mean = {c: np.nanmean(a.sel(curve=c).values, axis=0) for c in a.coords["curve"].values}
            method = "cem" if probe == "cem" else str(arr.attrs.get("method", probe))
            colour = cmap(k % 10)
            k += 1
            for ax, kind in zip(axes[0], ("deletion", "insertion")):
                ax.plot(q, mean[kind], color=colour, label=f"{model_id} ({method})")
                ax.plot(q, mean[f"{kind}_random"], color=colour, ls=":")
    if k == 0:
        plt.close(fig)
        return None
    for ax, kind in zip(axes[0], ("deletion", "insertion")):
        ax.set_xlabel("fraction of pixels perturbed")
        ax.set_ylabel("objective (1 = input, 0 = blurred)")
        ax.set_title(f"{kind}: map order (solid) vs random (dotted)", fontsize=9)
    axes[0][1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def cem_figure(store, metrics: pd.DataFrame | None):
    """The CEM of the first image of the last split, first window, per model (at most MAX_MODELS)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from probe.store import read_array

    frame = _rows(metrics, ("cem",))
    if frame.empty:
        return None
    entries = _entries(frame, "cem")
    maps = []
    for model_id, select in entries:
        try:
            cem = read_array(store, model_id, "cem", "cem", **select).isel(split=-1, window=0, image=0)
            box = read_array(store, model_id, "cem", "window_box", **select).isel(split=-1, window=0, image=0)
        except Exception:  # noqa: BLE001
            continue
        maps.append((model_id, cem, box))
    if not maps:
        return None
    fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps), 2.8), squeeze=False)
    for ax, (model_id, cem, box) in zip(axes[0], maps):
        values = cem.values.astype(float)
        block = int(cem.attrs.get("block", 1))
        bound = max(float(np.nanmax(np.abs(values))), 1e-6)
        ax.imshow(np.kron(values, np.ones((block, block))), cmap="seismic", vmin=-bound, vmax=bound,
                  interpolation="nearest")
        top, left, height, width = (int(v) for v in box.values)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, lw=1.5, edgecolor="#00c853"))
        ax.set_title(f"{model_id}\n±{bound:.2g} dB", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
