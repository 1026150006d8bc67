"""Representation figures: does the network represent the background content or the rain, layer by layer?

From the ``activations``, ``cka`` and ``ddr`` probes and the study-level model × model CKA (probe
``"cka_models"`` in the study store beside ``results.h5``, written by :mod:`probe.cross_models`):

* layer × layer CKA heatmaps of the models with the fewest and the most training backgrounds per source;
* alignment of each layer with the rain alone vs the clean background alone (CKA) over depth, per
  ``n_backgrounds`` — the shortcut signature is high alignment with the rain at depth;
* activation statistics over depth per ``n_backgrounds``: rain/background sensitivity ratio, Fisher ratio and
  linear-probe accuracy of rain vs background pixels, zero fraction;
* DDR scatter (2-D embedding of pooled deep features, coloured by degradation and by background image) for the
  fewest vs most backgrounds, and the DDR score / alignment gap / sensitivity vs ``n_backgrounds``;
* model × model CKA at a few probe points.

Each figure is skipped when its probe has no results; the section is None when none of them has. When a probe
ran with several parameter settings, the setting most models have is shown.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from probe.report.context import (
    ID_SPLIT,
    NON_DEGRADED,
    Figure,
    ReportContext,
    Section,
    Table,
)
from probe.report.sections import _representation_plots as plots
from probe.report.sections._representation_data import (
    OUTPUT_LAYERS,
    PROBES,
    STUDY_PROBE,
    deep_rows,
    feature_layer,
    title,
)
from probe.report.sections._representation_data import RepresentationData as _Data

MAX_SCATTER_GROUPS = 3   # rows of the DDR scatter: 2 per group
MAX_MODEL_TICKS = 30     # model × model heatmap: tick labels up to this many models
MAX_CROSS_LAYERS = 4     # model × model heatmap: probe points shown


# ------------------------------------------------------------------------------------------------ figures

def _layer_cka(d: _Data) -> Figure | None:
    picks = d.picks("cka")
    if not picks:
        return None
    panels, split, attrs = [], None, {}
    for _group, models in picks:
        row = []
        for model in models:
            arr = d.array("cka", model["model_id"], "layer_cka")
            split = split or d.main_split(list(arr.coords["split"].values))
            attrs = attrs or dict(arr.attrs)
            if split not in arr.coords["split"].values:
                row.append(None)
                continue
            row.append((title(model), arr.sel(split=split)))
        panels.append(row)
    fig = plots.heatmap_grid(
        panels, xlabel="probe point", ylabel="probe point",
        title=f"Layer × layer CKA on split '{split}' ({attrs.get('kernel', 'linear')} kernel, "
              f"{attrs.get('convention', 'image')} samples)")
    return d.ctx.save(fig, "representation_layer_cka", "Layer × layer CKA",
                      "Within each model, the CKA similarity of every pair of probe points on the degraded test "
                      "images (1 = the same representation up to rotation and scale). Columns: the fewest and the "
                      "most training backgrounds of each background source; rows: sources. Blocks of high CKA "
                      "show stages that carry the same information.")


def _alignment(d: _Data) -> Figure | None:
    frame = d.metrics("cka")
    frame = frame[frame["metric"].isin(["align_clean", "align_degradation"])] if len(frame) else frame
    if frame.empty:
        return None
    frame = frame.assign(target=frame["metric"].str.replace("align_", "", regex=False))
    splits = sorted(set(frame["split"]) - NON_DEGRADED, key=lambda s: (s != ID_SPLIT, s))
    groups = d.groups("cka")
    if not splits:
        return None
    fig = plots.depth_grid(
        frame, rows=splits, row_key="split", cols=groups,
        row_labels={s: f"CKA with input parts\n(split '{s}')" for s in splits},
        style_key="target", style_labels={"degradation": "rain alone (D)", "clean": "clean background (B)"},
        ylim={s: (-0.05, 1.05) for s in splits},
        title="Alignment of each layer with the rain alone vs the background alone")
    return d.ctx.save(fig, "representation_alignment", "Alignment to rain vs background over depth",
                      "CKA between a layer's features on the rainy input O = B + D and its features on the "
                      "clean background B alone (dashed) or the rain D alone (solid), through the same network; "
                      "one colour per number of training backgrounds (mean over seeds, band = range). The "
                      "shortcut signature: deep layers aligned with the rain rather than the background, more so "
                      "for models trained on many backgrounds.")


ACT_STATS = [
    ("sensitivity_ratio", "sensitivity ratio\nrain change / background change", True),
    ("fisher_ratio", "Fisher ratio\nrain vs background pixels", True),
    ("probe_accuracy", "linear-probe accuracy\nrain vs background pixels", False),
    ("zero_fraction", "zero fraction", False),
]


def _activations(d: _Data) -> Figure | None:
    frame = d.metrics("activations")
    if frame.empty:
        return None
    split = d.main_split(sorted(set(frame["split"])))
    part = frame[(frame["split"] == split) & frame["metric"].isin([s for s, _, _ in ACT_STATS])]
    spread = part.groupby("metric")["value"].agg(lambda v: float(np.nanmax(v) - np.nanmin(v)))
    rows = [s for s, _, _ in ACT_STATS if s in spread.index]
    rows = [s for s in rows if spread[s] > 0] or rows  # a statistic constant everywhere (e.g. no zeros) is left out
    if not rows:
        return None
    hlines = {"probe_accuracy": 0.5}
    baseline = frame[(frame["split"] == split) & (frame["metric"] == "input_sensitivity_ratio")]["value"]
    if len(baseline) and np.isfinite(baseline.mean()):
        hlines["sensitivity_ratio"] = float(baseline.mean())
    fig = plots.depth_grid(
        part, rows=rows, row_key="metric", cols=d.groups("activations"),
        row_labels={s: label for s, label, _ in ACT_STATS}, logy=[s for s, _, log in ACT_STATS if log],
        hlines=hlines, ylim={"probe_accuracy": (0.4, 1.02), "zero_fraction": (-0.02, 1.02)},
        title=f"Activation statistics over depth (split '{split}')")
    return d.ctx.save(fig, "representation_activations", "Activation statistics over depth",
                      "Per probe point, one colour per number of training backgrounds. Sensitivity ratio: relative "
                      "change of the features when only the rain is re-drawn over when only the background is "
                      "swapped (> dotted input baseline: the layer follows the rain more than the input does). "
                      "Fisher ratio and linear-probe accuracy (dotted: chance) of features at rain vs background "
                      "pixels: how linearly a layer separates the rain. Zero fraction (shown unless constant): share "
                      "of exactly-zero activations.")


def _ddr_scatter(d: _Data) -> Figure | None:
    picks = d.picks("ddr", MAX_SCATTER_GROUPS)
    if not picks:
        return None
    rows, layer, method = [], None, "pca"
    for _group, models in picks:
        for model in models:
            emb = d.array("ddr", model["model_id"], "embedding")
            name = feature_layer([str(v) for v in emb.coords["layer"].values])
            layer = layer or name
            method = str(emb.attrs.get("method", method))
            rows.append((title(model), emb.sel(layer=name)))
    fig = plots.ddr_scatter(rows, title=f"Deep degradation representation: {method.upper()} of pooled features "
                                        f"at '{plots.short_layer(layer or '')}'")
    return d.ctx.save(fig, "representation_ddr_scatter", "DDR embedding: by degradation vs by background",
                      "2-D embedding of globally pooled features of the same test backgrounds under several "
                      "degradations, at the deepest feature probe point, for the fewest and most training "
                      "backgrounds of each source. Left: coloured by degradation; right: by background image. "
                      "Clusters by degradation mean the network represents the degradation; clusters by "
                      "background mean it represents the content.")


VERSUS = [
    ("ddr_score", "DDR score\n(silhouette by degradation − by background)"),
    ("silhouette_degradation", "silhouette by degradation"),
    ("align_gap_deep", "deep alignment gap\nCKA(rain) − CKA(background)"),
    ("sensitivity_ratio", "deep sensitivity ratio\nrain / background change"),
]


def _versus_frame(d: _Data) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per model and quantity (column ``panel``): deep-layer values vs n_backgrounds."""
    parts, labels = [], dict(VERSUS)
    ddr = d.metrics("ddr")
    if len(ddr):
        deep = deep_rows(ddr[ddr["metric"].isin(["ddr_score", "silhouette_degradation"])])
        parts.append(deep.assign(panel=deep["metric"]))
    cka = d.metrics("cka")
    if len(cka):
        split = d.main_split(sorted(set(cka["split"])))
        gap = cka[(cka["metric"] == "align_gap_deep") & (cka["split"] == split)]
        parts.append(gap.assign(panel="align_gap_deep"))
        labels["align_gap_deep"] = f"deep alignment gap ('{split}')\nCKA(rain) − CKA(background)"
    act = d.metrics("activations")
    if len(act):
        split = d.main_split(sorted(set(act["split"])))
        sens = deep_rows(act[(act["metric"] == "sensitivity_ratio") & (act["split"] == split)])
        parts.append(sens.assign(panel="sensitivity_ratio"))
        labels["sensitivity_ratio"] = f"deep sensitivity ratio ('{split}')\nrain / background change"
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(frame):
        frame = frame.dropna(subset=["value"])
    return frame, labels


def _versus_n(d: _Data, frame: pd.DataFrame, labels: dict[str, str]) -> Figure | None:
    if frame.empty:
        return None
    panels = [p for p, _ in VERSUS if p in set(frame["panel"])]
    several = d.models.loc[d.models["n_backgrounds"].notna(), "family"].nunique() > 1
    fig = plots.versus_n(frame, panels=panels, labels=labels, hlines={"ddr_score": 0.0, "align_gap_deep": 0.0},
                         legend_title="family · background" if several else "background source",
                         title="Representation indicators vs number of training backgrounds")
    return d.ctx.save(fig, "representation_vs_n", "DDR score and shortcut indicators vs n_backgrounds",
                      "Per background source (dots: seeds, line: mean). DDR score and silhouette at the deepest "
                      "feature probe point: > 0 when pooled features cluster by degradation more than by "
                      "background. Alignment gap (mean over the deepest third of the probe points): > 0 when deep "
                      "layers align with the rain more than with the background. Sensitivity ratio at the deepest "
                      "feature probe point: feature change under a new rain draw over a new background.")


def _external_table(frame: pd.DataFrame, labels: dict[str, str], group_name: str) -> Table | None:
    """Your networks' deep representation indicators per source, beside that source's grid models (mean
    over seeds per n_backgrounds): CKA alignment gap, activation sensitivity, DDR."""
    if frame.empty or "external" not in frame or not frame["external"].any():
        return None
    ext = frame[frame["external"]]
    mine = ext.pivot_table(index=["name", "group"], columns="panel", values="value", aggfunc="mean").reset_index()
    mine.insert(0, "model", "yours: " + mine.pop("name"))
    grid = frame[~frame["external"] & frame["group"].isin(set(ext["group"]))]
    refs = grid.pivot_table(index=["group", "n_backgrounds"], columns="panel", values="value",
                            aggfunc="mean").reset_index()
    refs.insert(0, "model", [f"grid, n_backgrounds={int(n)}" for n in refs.pop("n_backgrounds")])
    table = pd.concat([mine, refs], ignore_index=True).sort_values(["group", "model"], kind="stable")
    table = table[["model", "group"] + [p for p, _ in VERSUS if p in table.columns]]
    table.columns = [labels.get(c, c).replace("\n", " ") for c in table.columns]
    return Table("representation_external", "Your networks' representations beside the grid, per source",
                 table.rename(columns={"group": group_name}).round(3),
                 "Deep-layer indicators of each of your networks on a source's images, beside that source's grid "
                 "models (mean over seeds per number of training backgrounds): CKA alignment gap (rain − "
                 "background), activation sensitivity ratio, DDR score and silhouette by degradation.")


def _summary_table(frame: pd.DataFrame, labels: dict[str, str], group_name: str) -> Table | None:
    if "external" in frame:
        frame = frame[~frame["external"]]
    if frame.empty:
        return None
    keys = ["group", "n_backgrounds"]
    table = frame.pivot_table(index=keys, columns="panel", values="value", aggfunc="mean")
    seeds = frame.groupby(keys)["model_id"].nunique().rename("n_models")
    table = table.join(seeds)
    table = table[["n_models"] + [p for p, _ in VERSUS if p in table.columns]]
    table.columns = [labels.get(c, c).replace("\n", " ") for c in table.columns]
    table = table.reset_index().rename(columns={"group": group_name})
    table["n_backgrounds"] = table["n_backgrounds"].astype(int)
    return Table("representation_summary", "Representation indicators (deep layers, mean over seeds)",
                 table.round(3), "Same numbers as the figure above.")


def _model_cka(d: _Data) -> Figure | None:
    from probe.store import read_array

    if d.study.empty:
        return None
    entry = d.study.sort_values("time").iloc[-1]
    splits = [name[len("cka_"):] for name in entry["arrays"] if name.startswith("cka_")]
    if not splits:
        return None
    split = d.main_split(splits)
    arr = read_array(entry["store"], entry["model_id"], STUDY_PROBE, f"cka_{split}", params=entry["params"],
                     eval_info=json.loads(entry["eval"]))
    present = set(str(v) for v in arr.coords["model_a"].values)
    table = d.models[d.models["model_id"].isin(present)]
    order = list(table["model_id"])
    if len(order) < 2:
        return None
    arr = arr.sel(model_a=order, model_b=order)
    layer_names = [str(v) for v in arr.coords["layer"].values]
    candidates = [i for i, name in enumerate(layer_names) if name not in OUTPUT_LAYERS] or list(range(len(
        layer_names)))
    picked = sorted({candidates[int(round(i))] for i in np.linspace(0, len(candidates) - 1,
                                                                       min(MAX_CROSS_LAYERS, len(candidates)))})
    labels = list(table["label"])
    groups = list(table["group"])
    boundaries = [i - 0.5 for i in range(1, len(groups)) if groups[i] != groups[i - 1]]
    by_depth = arr.attrs.get("match") == "depth" and "depth" in arr.coords
    names = [f"relative depth {float(arr.coords['depth'].values[k]):.2f}" if by_depth
             else f"probe point {plots.short_layer(layer_names[k])}" for k in range(len(layer_names))]
    panels = [[(names[k], arr.isel(layer=k).assign_coords(model_a=labels, model_b=labels)) for k in picked]]
    attrs = arr.attrs
    lowest = float(np.nanmin(arr.isel(layer=picked).values)) if arr.size else 0.0
    vmin = 0.0 if not np.isfinite(lowest) or lowest < 0.5 else min(0.95, np.floor(lowest * 20) / 20)
    fig = plots.heatmap_grid(panels, xlabel="model", ylabel="model", tick_labels=len(order) <= MAX_MODEL_TICKS,
                             boundaries=boundaries, vmin=vmin,
                             title=f"Model × model CKA on split '{split}' ({attrs.get('kernel', 'linear')} kernel, "
                                   f"layers matched by {attrs.get('match', 'name')})")
    return d.ctx.save(fig, "representation_model_cka", "Model × model CKA",
                      "CKA between the representations of every pair of models on the same test images, at a few "
                      "probe points (models ordered by source, number of training backgrounds, seed; white lines "
                      "separate sources; the colour scale starts at 0 or just below the smallest value shown). Models "
                      "trained on few vs many backgrounds that diverge at depth learned different things.")


# ------------------------------------------------------------------------------------------------ section

def representation(ctx: ReportContext) -> Section | None:
    if ctx.metrics.empty or not ctx.metrics["probe"].isin(PROBES).any():
        return None
    d = _Data(ctx)
    if not d.has_any():
        return None
    section = Section("Representations: content or rain?", text=(
        "What the networks represent layer by layer. A network that took the shortcut of modelling the rain shows "
        "deep features aligned with the rain, sensitive to the rain more than to the content, and clustering by "
        "degradation; one that learned the content shows the opposite."))
    try:
        versus, labels = _versus_frame(d)
    except Exception as exc:
        warnings.warn(f"representation indicators failed: {type(exc).__name__}: {exc}", stacklevel=2)
        versus, labels = pd.DataFrame(), dict(VERSUS)
    builders: list[tuple[str, Callable[[], Figure | None]]] = [
        ("layer × layer CKA", lambda: _layer_cka(d)),
        ("alignment", lambda: _alignment(d)),
        ("activation statistics", lambda: _activations(d)),
        ("DDR scatter", lambda: _ddr_scatter(d)),
        ("indicators vs n_backgrounds", lambda: _versus_n(d, versus, labels)),
        ("model × model CKA", lambda: _model_cka(d)),
    ]
    for name, build in builders:
        try:
            figure = build()
        except Exception as exc:  # one broken figure must not lose the others
            import matplotlib.pyplot as plt

            plt.close("all")
            warnings.warn(f"representation figure {name!r} failed: {type(exc).__name__}: {exc}", stacklevel=2)
            continue
        if figure is not None:
            section.figures.append(figure)
    several = d.models.loc[d.models["n_backgrounds"].notna(), "family"].nunique() > 1
    group_name = "family · background" if several else "background source"
    for table in (_summary_table(versus, labels, group_name), _external_table(versus, labels, group_name)):
        if table is not None:
            section.tables.append(table)
    return section if section.figures or section.tables else None
