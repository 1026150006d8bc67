"""Attribution figures: which input pixels the networks use, as the number of training backgrounds grows.

From the ``attribution`` probe's results (see :mod:`probe.probes.attribution`):

- overlay strips per family × background source: one row per ``n_backgrounds`` (capped at
  :data:`MAX_ROWS`), columns = the degraded input with the rain mask and the attribution windows marked, then
  the attribution heat map of each window (``on`` / ``off`` rain) over the input, on the first OOD split;
- Diffusion Index vs ``n_backgrounds`` per family (one line per background source and window, 95% t-interval
  bands over seeds when a point has several models);
- attribution share on the rain component, share inside the rain mask and mask enrichment vs
  ``n_backgrounds``;
- a table of the plotted means (:func:`attribution_table`).

Every number drawn comes from :func:`attribution_summary` of the tidy metrics (the per-model values are the
probe's means over images). When a store holds attribution results with several parameter sets, the set that
covers the most models is shown (:func:`attribution_frame`). Study-level pseudo models
(``probe.report.context.STUDY_MODEL_IDS``: results that belong to no model) are ignored.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from probe.report.context import ID_SPLIT, NON_DEGRADED, STUDY_MODEL_IDS, ReportContext, Section, Table

PROBE = "attribution"
#: At most this many rows (n_backgrounds values) per overlay strip; evenly spaced, first and last kept.
MAX_ROWS = 8
GROUP_KEYS = ["family", "background", "n_backgrounds", "split", "window"]
DI_METRICS = [("diffusion_index", "Diffusion Index")]
SHARE_METRICS = [
    ("share_on_rain", "share of attribution on rain (L)"),
    ("share_in_mask", "share inside rain mask"),
    ("mask_enrichment", "mask enrichment (share / mask area)"),
]
TABLE_METRICS = [("diffusion_index", "DI"), ("share_on_rain", "share on rain"),
                 ("share_in_mask", "share in mask"), ("mask_enrichment", "mask enrichment")]
WINDOW_STYLES = {"on": "-", "off": "--", "full": "-."}
WINDOW_COLOURS = {"on": "#00e5ff", "off": "#ff9800", "full": "#ffffff"}


# ------------------------------------------------------------------------------------------------ data
def _split_order(splits) -> list[str]:
    return sorted(set(splits), key=lambda s: (s != ID_SPLIT, s))


def _window_order(windows) -> list[str]:
    known = list(WINDOW_STYLES)
    return sorted(set(windows), key=lambda w: (known.index(w) if w in known else len(known), w))


def attribution_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """The attribution rows to report: real models only, no clean split, one parameter set, one entry a model.

    Adds ``params`` selection info in ``frame.attrs["params"]`` (the JSON of the chosen parameter set) and
    ``frame.attrs["other_params"]`` (how many other parameter sets the store holds).
    """
    if metrics is None or len(metrics) == 0 or "probe" not in metrics:
        return pd.DataFrame()
    frame = metrics[(metrics["probe"] == PROBE) & ~metrics["model_id"].isin(STUDY_MODEL_IDS)
                    & ~metrics["split"].isin(NON_DEGRADED)].copy()
    if frame.empty or "n_backgrounds" not in frame or frame["n_backgrounds"].isna().all():
        return pd.DataFrame()
    frame = frame[frame["n_backgrounds"].notna()]
    counts = frame.groupby("params")["model_id"].nunique()
    best = max(sorted(counts.index), key=lambda p: counts[p])  # most models; ties: first in sorted order
    frame = frame[frame["params"] == best]
    first_eval = frame.groupby("model_id")["eval"].min()  # one entry per model (same params, several evals)
    frame = frame[frame["eval"] == frame["model_id"].map(first_eval)].copy()
    for key in ("family", "background", "window"):
        if key not in frame:
            frame[key] = "?"
        frame[key] = frame[key].astype(object).where(frame[key].notna() & (frame[key] != ""), "?").astype(str)
    if "seed" not in frame:
        frame["seed"] = 0
    frame["n_backgrounds"] = frame["n_backgrounds"].astype(int)
    frame.attrs["params"] = best
    frame.attrs["other_params"] = len(counts) - 1
    return frame


def attribution_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per family × background × n_backgrounds × split × window × metric: mean over models (seeds), the
    number of models, and a 95% t-interval of the mean (NaN for a single model)."""
    from scipy.stats import t as student_t

    if frame.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "metric", "mean", "n_models", "ci_low", "ci_high"])
    keys = [*GROUP_KEYS, "metric"]
    grouped = frame.dropna(subset=["value"]).groupby(keys)["value"]
    out = grouped.agg(mean="mean", std="std", n_models="count").reset_index()
    n = out["n_models"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n > 1, student_t.ppf(0.975, np.maximum(n - 1, 1)) * out["std"].to_numpy() / np.sqrt(n),
                        np.nan)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out.drop(columns="std")


def attribution_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per family × background × n_backgrounds × split; mean DI, shares and enrichment
    per window (columns ``DI (on)``, ``share on rain (on)``, ...), and the number of models."""
    if summary.empty:
        return pd.DataFrame()
    rows_keys = ["family", "background", "n_backgrounds", "split"]
    part = summary[summary["metric"].isin([m for m, _ in TABLE_METRICS])]
    wide = part.pivot_table(index=rows_keys, columns=["metric", "window"], values="mean", aggfunc="first")
    windows = _window_order(part["window"])
    table = pd.DataFrame(index=wide.index)
    for metric, label in TABLE_METRICS:
        for window in windows:
            if (metric, window) in wide.columns:
                table[f"{label} ({window})"] = wide[(metric, window)]
    table["models"] = part.groupby(rows_keys)["n_models"].max()
    table = table.reset_index()
    order = {s: i for i, s in enumerate(_split_order(table["split"]))}
    table = table.sort_values(["family", "background", "n_backgrounds", "split"],
                              key=lambda c: c.map(order) if c.name == "split" else c, kind="stable")
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- figures
def _colours(values) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {v: cmap(i % 10) for i, v in enumerate(values)}


def _line_figure(summary: pd.DataFrame, metrics: list[tuple[str, str]], title: str):
    import matplotlib.pyplot as plt

    metrics = [(m, label) for m, label in metrics if m in set(summary["metric"])]
    splits = _split_order(summary["split"])
    fig, axes = plt.subplots(len(metrics), len(splits), figsize=(3.8 * len(splits), 2.9 * len(metrics)),
                             squeeze=False)
    backgrounds = sorted(summary["background"].unique())
    colours = _colours(backgrounds)
    ns = sorted(summary["n_backgrounds"].unique())
    log_x = ns[0] > 0 and ns[-1] / ns[0] >= 4
    for i, (metric, label) in enumerate(metrics):
        for j, split in enumerate(splits):
            ax = axes[i][j]
            ax.set_label(f"{metric}|{split}")
            part = summary[(summary["metric"] == metric) & (summary["split"] == split)]
            for background in backgrounds:
                for window in _window_order(part["window"]):
                    line = part[(part["background"] == background) & (part["window"] == window)]
                    line = line.sort_values("n_backgrounds")
                    if line.empty:
                        continue
                    x = line["n_backgrounds"].to_numpy(float)
                    (artist,) = ax.plot(x, line["mean"].to_numpy(float), marker="o", ms=4,
                                        ls=WINDOW_STYLES.get(window, ":"), color=colours[background],
                                        label=f"{background}, window {window}")
                    artist.set_gid(f"{background}|{window}")
                    if line["n_models"].max() > 1 and line["ci_low"].notna().any():
                        ax.fill_between(x, line["ci_low"].to_numpy(float), line["ci_high"].to_numpy(float),
                                        color=colours[background], alpha=0.15, lw=0)
            if metric == "mask_enrichment":
                ax.axhline(1.0, color="0.5", ls=":", lw=1)
            if metric.startswith("share_"):
                ax.set_ylim(-0.02, 1.02)
            if log_x:
                ax.set_xscale("log", base=2)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_title(f"split '{split}'" if i == 0 else "")
            ax.set_ylabel(label if j == 0 else "")
            ax.set_xlabel("n_backgrounds" if i == len(metrics) - 1 else "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _pick_rows(models: pd.DataFrame) -> pd.DataFrame:
    """One model per n_backgrounds (lowest seed, then id), at most MAX_ROWS evenly spaced rows."""
    models = models.sort_values(["n_backgrounds", "seed", "model_id"]).drop_duplicates("n_backgrounds")
    if len(models) > MAX_ROWS:
        keep = np.unique(np.linspace(0, len(models) - 1, MAX_ROWS).round().astype(int))
        models = models.iloc[keep]
    return models


def _overlay_figure(store, models: pd.DataFrame, split: str, title: str):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from probe.store import read_array

    rows = []
    for _, row in models.iterrows():
        select = {"params": row["params"], "eval_info": json.loads(row["eval"])}
        arrays = {name: read_array(store, row["model_id"], PROBE, name, **select)
                  for name in ("attribution", "input", "rain_mask", "window_box", "image_metrics")}
        if split not in list(arrays["attribution"].coords["split"].values) or arrays["attribution"].sizes["image"] == 0:
            continue
        rows.append((row, {k: v.sel(split=split).isel(image=0) for k, v in arrays.items()}))
    if not rows:
        return None
    windows = [str(w) for w in rows[0][1]["attribution"].coords["window"].values]
    fig, axes = plt.subplots(len(rows), 1 + len(windows), figsize=(2.3 * (1 + len(windows)), 2.35 * len(rows)),
                             squeeze=False)
    for i, (row, a) in enumerate(rows):
        image = np.clip(np.moveaxis(a["input"].values, 0, -1), 0, 1)
        grey = image.mean(-1)
        boxes = {w: a["window_box"].sel(window=w).values for w in windows}

        def mark(ax, boxes=boxes, only=None):
            for w, (top, left, height, width) in boxes.items():
                if only is None or w == only:
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, lw=1.2,
                                           edgecolor=WINDOW_COLOURS.get(w, "white")))

        ax = axes[i][0]
        ax.imshow(image, interpolation="nearest")
        mask = a["rain_mask"].values
        if mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors="white", linewidths=0.4, alpha=0.7)
        mark(ax)
        ax.set_ylabel(f"n={int(row['n_backgrounds'])}\nseed {row['seed']}", fontsize=8)
        if i == 0:
            ax.set_title("input, rain mask, windows", fontsize=8)
        for j, w in enumerate(windows, start=1):
            ax = axes[i][j]
            amap = np.abs(a["attribution"].sel(window=w).values.astype(float))
            peak = amap.max()
            heat = np.sqrt(amap / peak) if peak > 0 else np.zeros_like(amap)
            ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=np.clip(heat, 0, 1) * 0.9,
                      interpolation="nearest")
            mark(ax, only=w)
            values = a["image_metrics"].sel(window=w)
            di = float(values.sel(metric="diffusion_index"))
            rain = float(values.sel(metric="share_on_rain"))
            label = f"'{w}': DI {di:.1f}" + (f", rain {rain:.0%}" if np.isfinite(rain) else "")
            ax.set_title(label, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _describe(params_json: str) -> str:
    try:
        params = json.loads(params_json)
    except (TypeError, json.JSONDecodeError):
        return ""
    keys = ("method", "objective", "steps", "n_images", "window")
    return ", ".join(f"{k} {params[k]}" for k in keys if params.get(k) is not None)


# --------------------------------------------------------------------------------------------- section
def attribution(ctx: ReportContext) -> Section | None:
    frame = attribution_frame(ctx.metrics)
    if frame.empty:  # no grid model attributed: external networks' rows may still be there
        from probe.report.sections._attribution_external import external_attribution

        empty = Section("Attribution")
        external_attribution(ctx, empty, None, [m for m, _ in TABLE_METRICS])
        return _checks(ctx, empty, crop_note="")
    import matplotlib

    matplotlib.use("Agg")

    summary = attribution_summary(frame)
    splits = _split_order(frame["split"])
    ood = [s for s in splits if s != ID_SPLIT]
    split = ood[0] if ood else splits[0]
    families = sorted(frame["family"].unique())
    settings = _describe(frame.attrs.get("params", ""))
    sizes = sorted({int(v) for v in frame.loc[frame["metric"] == "map_size", "value"].dropna()})
    section = Section("Attribution")
    section.text = (
        f"Which input pixels explain the output inside a window on rain streaks ('on') or off them ('off') "
        f"({settings}). The Diffusion Index (DI, 0–100) measures how widely the attribution spreads: a network "
        f"that reconstructs the content draws on a wide context, one that learned the rain pattern looks at the "
        f"streak itself. 'share on rain' is the fraction of attribution mass on the rain component L of the "
        f"input (B + L); 'mask enrichment' is the share inside the rain mask over the mask's area (1 = no "
        f"preference). DI depends on the map size: maps here have {', '.join(map(str, sizes)) or '?'} pixels."
        + (f" The store holds {frame.attrs['other_params']} other attribution parameter set(s), not shown."
           if frame.attrs.get("other_params") else ""))
    for family in families:
        fam = frame[frame["family"] == family]
        for background in sorted(fam["background"].unique()):
            models = _pick_rows(fam[fam["background"] == background].drop_duplicates("model_id"))
            fig = _overlay_figure(ctx.store, models, split,
                                  f"{family} / {background}: attribution on split '{split}'")
            if fig is None:
                continue
            section.figures.append(ctx.save(
                fig, f"attribution_overlay_{family}_{background}",
                f"Attribution overlays, {family} / {background}",
                f"One row per number of training backgrounds (first seed, first image of split '{split}', at most "
                f"{MAX_ROWS} rows). Left: the degraded input, rain mask outline in white, windows 'on' (cyan) and "
                f"'off' (orange). Right: |attribution| of each window's objective over the input (sqrt of the map "
                f"over its maximum); titles give that image's DI and share on rain."))
    suffix_needed = len(families) > 1
    for family in families:
        fam = summary[summary["family"] == family]
        suffix = f"_{family}" if suffix_needed else ""
        bands = "Bands: 95% t-interval over seeds." if fam["n_models"].max() > 1 else "One model per point."
        section.figures.append(ctx.save(
            _line_figure(fam, DI_METRICS, f"{family}: Diffusion Index vs number of training backgrounds"),
            f"attribution_di{suffix}", f"Diffusion Index vs n_backgrounds {family}",
            f"Mean DI over the attributed images, then over models. Colour: background source; solid: window on "
            f"rain, dashed: off rain. Columns: test splits. {bands}"))
        if fam["metric"].isin([m for m, _ in SHARE_METRICS]).any():
            section.figures.append(ctx.save(
                _line_figure(fam, SHARE_METRICS, f"{family}: where the attribution falls"),
                f"attribution_share{suffix}", f"Attribution share on rain vs n_backgrounds {family}",
                f"Top: share of attribution mass on the rain component; middle: share inside the rain mask; "
                f"bottom: that share over the mask's area (dotted line: 1 = no preference). Colour: background "
                f"source; solid: window on rain, dashed: off rain. {bands}"))
    table = attribution_table(summary)
    if not table.empty:
        section.tables.append(Table(
            "attribution_summary", "Attribution by number of training backgrounds", table,
            "Means over attributed images and models (seeds); the values plotted above."))
    from probe.report.sections._attribution_external import external_attribution

    external_attribution(ctx, section, frame.attrs.get("params"), [m for m, _ in TABLE_METRICS])
    return _checks(ctx, section, crop_note=_crop_note(ctx.store, frame))


def _crop_note(store, frame: pd.DataFrame) -> str:
    """Which crop the attribution integrated on (stored in the maps' attrs by the probe)."""
    from probe.store import read_array

    notes = set()
    for _, row in frame.drop_duplicates("model_id").head(8).iterrows():
        try:
            arr = read_array(store, row["model_id"], PROBE, "attribution", params=row["params"],
                             eval_info=json.loads(row["eval"]))
        except Exception:  # noqa: BLE001 - an older result: nothing recorded
            continue
        notes.add(str(arr.attrs.get("crop", "not recorded")))
    return ("Integration region: " + "; ".join(sorted(notes)) + ".") if notes else ""


def _checks(ctx: ReportContext, section: Section, crop_note: str) -> Section | None:
    """Causal effect maps beside the gradient maps, and the faithfulness of every map (all models)."""
    import matplotlib

    matplotlib.use("Agg")
    from probe.report.sections._attribution_checks import (
        cem_figure,
        cem_table,
        faithfulness_figure,
        faithfulness_table,
    )

    faith = faithfulness_table(ctx.metrics)
    cems = cem_table(ctx.metrics)
    if faith.empty and cems.empty and not section.figures:
        return None
    if crop_note:
        section.text = (section.text + " " + crop_note).strip()
    if not cems.empty:
        section.text += (" Causal effect maps (CEM, Hu et al. 2024): each 8-px block of the clean background is "
                         "replaced by other natural content and the rain re-added; the map is the drop in the "
                         "ROI's PSNR (red: the content there helps the restoration, blue: it hurts). 'rain share' "
                         "is how much of the removal's dependence is on the rain rather than on the content "
                         "(identity: n/a, it removes nothing; oracle: removal follows the rain only).")
        fig = cem_figure(ctx.store, ctx.metrics)
        if fig is not None:
            section.figures.append(ctx.save(fig, "attribution_cem", "Causal effect maps",
                                            "CEM of the first image per model (dB; green box: ROI)."))
        section.tables.append(Table("attribution_cem", "Causal effect map indicators", cems,
                                    "Means over images with 95% bootstrap CIs over images."))
    if not faith.empty:
        bad = faith[faith["verdict"] == "no better than random"]
        section.text += (" Faithfulness: deleting (or inserting) pixels in the order of each map must change the "
                         "objective faster than random orders; the gain is the area between the curves. "
                         + (f"{len(bad)} map(s) are no better than random: "
                            + ", ".join(sorted({f"{r.model_id} ({r.method or r.probe})" for r in bad.itertuples()}))
                            + "." if len(bad) else "Every map shown beats random orders."))
        fig = faithfulness_figure(ctx.store, ctx.metrics)
        if fig is not None:
            section.figures.append(ctx.save(fig, "attribution_faithfulness", "Attribution faithfulness curves",
                                            "Deletion and insertion curves, mean over images, per model and "
                                            "method (solid: map order, dotted: mean of random orders)."))
        section.tables.append(Table("attribution_faithfulness", "Faithfulness of every attribution map", faith,
                                    "Gain over random orders (mean over images, 95% bootstrap CI over images); "
                                    "verdict 'no better than random' where the CI is not above 0."))
    return section
