"""Figures of the representation section (matplotlib, Agg): drawing only, no store access.

Every function takes tidy frames / arrays already selected by :mod:`probe.report.sections.representation`
and returns a matplotlib figure (the caller saves it with ``ctx.save``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Line style per alignment target / style key value (others cycle through the rest).
STYLES = {"degradation": "-", "clean": "--"}
_MORE_STYLES = [":", "-."]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_layer(name: str) -> str:
    """``blocks.0.hook_out`` → ``blocks.0``, ``hook_head`` → ``head``: compact tick labels."""
    name = str(name)
    for suffix in (".hook_out", ".hook_merge"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + ("+" if suffix == ".hook_merge" else "")
    return name.replace("hook_", "")


def n_colors(values: Sequence[Any]) -> dict[Any, Any]:
    """A sequential colour per ``n_backgrounds`` value (few = light-green, many = dark-blue)."""
    plt = _plt()
    cmap = plt.get_cmap("viridis_r")
    values = list(values)
    if len(values) == 1:
        return {values[0]: cmap(0.6)}
    return {v: cmap(0.15 + 0.75 * i / (len(values) - 1)) for i, v in enumerate(values)}


def _n_label(n: Any) -> str:
    return "n=?" if n is None or (isinstance(n, float) and np.isnan(n)) else f"n={int(n)}"


def _depth_ticks(ax: Any, part: pd.DataFrame, x: str = "depth") -> None:
    grid = part[~part["external"]] if "external" in part else part
    names = {tuple(g.sort_values(x)["layer"]) for _, g in grid.groupby("model_id")}
    if x == "rel_depth" and (len(names) > 1 or len(grid) < len(part)):  # several layer sets: depth 0-1 only
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
        return
    layers = grid.drop_duplicates(x).sort_values(x)
    ax.set_xticks(layers[x].to_numpy())
    if len(layers) <= 14:
        ax.set_xticklabels([short_layer(v) for v in layers["layer"]], rotation=60, ha="right", fontsize=7)


def depth_grid(frame: pd.DataFrame, *, rows: Sequence[str], row_key: str, cols: Sequence[str],
               row_labels: dict[str, str], title: str, style_key: str | None = None,
               style_labels: dict[str, str] | None = None, logy: Sequence[str] = (),
               hlines: dict[str, float] | None = None, ylim: dict[str, tuple[float, float]] | None = None) -> Any:
    """Curves over depth: one panel per (row value, ``group``); one line per ``n_backgrounds`` (mean over
    seeds, thin band = min–max over seeds) and per ``style_key`` value (line style).

    ``frame`` columns: ``group``, ``n_backgrounds``, ``depth``, ``layer``, ``value``, ``row_key`` and
    ``style_key``; with ``rel_depth`` the x axis is relative depth (0 = first probe point, 1 = last), so
    networks with different layers share a panel; rows with ``external`` true (your networks, no
    ``n_backgrounds``) are drawn in black, one marker per network (``name``).
    """
    plt = _plt()
    from matplotlib.lines import Line2D

    hlines = hlines or {}
    ylim = ylim or {}
    x = "rel_depth" if "rel_depth" in frame else "depth"
    ext_names = sorted(frame.loc[frame["external"], "name"].astype(str).unique()) if "external" in frame \
        and "name" in frame else []
    ext_marker = {n: "*^sDvP"[k % 6] for k, n in enumerate(ext_names)}
    n_values = sorted(frame["n_backgrounds"].dropna().unique())
    colors = n_colors(n_values or [None])
    styles = list(frame[style_key].dropna().unique()) if style_key else [None]
    style_of = {s: STYLES.get(str(s), _MORE_STYLES[i % len(_MORE_STYLES)]) if style_key else "-"
                for i, s in enumerate(styles)}
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.3 * len(cols) + 1.6, 2.6 * len(rows)),
                             squeeze=False, sharex="col", layout="constrained")
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            part = frame[(frame[row_key] == row) & (frame["group"] == col)]
            if part.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for n in n_values:
                for s in styles:
                    line = part[part["n_backgrounds"] == n]
                    if style_key:
                        line = line[line[style_key] == s]
                    if line.empty:
                        continue
                    stats = line.groupby(x)["value"].agg(["mean", "min", "max"]).reset_index()
                    ax.plot(stats[x], stats["mean"], style_of[s], color=colors[n], marker="o",
                            markersize=2.5, linewidth=1.4)
                    if line["model_id"].nunique() > 1:
                        ax.fill_between(stats[x], stats["min"], stats["max"], color=colors[n],
                                        alpha=0.12, linewidth=0)
            for name in ext_names:  # your networks, on this panel's source
                for s in styles:
                    line = part[part["external"] & (part["name"].astype(str) == name)]
                    if style_key:
                        line = line[line[style_key] == s]
                    if line.empty:
                        continue
                    stats = line.groupby(x)["value"].mean().reset_index()
                    ax.plot(stats[x], stats["value"], style_of[s], color="black", marker=ext_marker[name],
                            markersize=5, linewidth=1.1)
            if row in hlines:
                ax.axhline(hlines[row], color="grey", linewidth=0.8, linestyle=":")
            values = part["value"].to_numpy(dtype=float)
            if row in logy and (values > 0).all() and values.max() > 10 * values.min():
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            if row in ylim:  # a floor / ceiling that never hides data
                lo, hi = ylim[row]
                ax.set_ylim(min(lo, float(part["value"].min()) - 0.03), max(hi, float(part["value"].max()) + 0.03))
            _depth_ticks(ax, part, x)
            if i == 0:
                ax.set_title(str(col), fontsize=10)
            if j == 0:
                ax.set_ylabel(row_labels.get(row, row), fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("relative depth (input → output)" if x == "rel_depth" else
                              "probe point (input → output)", fontsize=8)
            ax.grid(alpha=0.25)
    handles = [Line2D([], [], color=colors[n], marker="o", markersize=3, label=_n_label(n)) for n in n_values]
    handles += [Line2D([], [], color="black", marker=ext_marker[n], markersize=5, label=f"yours: {n}")
                for n in ext_names]
    if style_key and len(styles) > 1:
        handles += [Line2D([], [], color="black", linestyle=style_of[s],
                           label=(style_labels or {}).get(str(s), str(s))) for s in styles]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="training backgrounds",
               title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


def heatmap_grid(panels: Sequence[Sequence[tuple[str, Any] | None]], *, title: str, xlabel: str, ylabel: str,
                 tick_labels: bool = True, vmin: float = 0.0, vmax: float = 1.0, cbar_label: str = "CKA",
                 boundaries: Sequence[float] = ()) -> Any:
    """A grid of heatmaps with one shared colour bar. ``panels[i][j]`` is ``(title, DataArray 2-D)`` (rows →
    first dim, columns → second dim, coordinate values as tick labels) or None (empty cell)."""
    plt = _plt()
    n_rows = len(panels)
    n_cols = max(len(r) for r in panels)
    size = max(2.6, min(4.2, 0.32 * max((p[1].shape[0] for r in panels for p in r if p), default=8)))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + 1.4, size * n_rows + 0.6), squeeze=False,
                             layout="constrained")
    image = None
    for i, row in enumerate(panels):
        for j in range(n_cols):
            ax = axes[i][j]
            panel = row[j] if j < len(row) else None
            if panel is None:
                ax.set_visible(False)
                continue
            name, matrix = panel
            values = np.asarray(matrix.values, dtype=float)
            image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ya, xa = matrix.dims
            if tick_labels:
                ax.set_yticks(range(values.shape[0]))
                ax.set_yticklabels([short_layer(v) for v in matrix.coords[ya].values], fontsize=6)
                ax.set_xticks(range(values.shape[1]))
                ax.set_xticklabels([short_layer(v) for v in matrix.coords[xa].values], fontsize=6, rotation=70,
                                   ha="right")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            for b in boundaries:
                ax.axhline(b, color="white", linewidth=0.8)
                ax.axvline(b, color="white", linewidth=0.8)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if i == n_rows - 1:
                ax.set_xlabel(xlabel, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=cbar_label)
    fig.suptitle(title, fontsize=11)
    return fig


def ddr_scatter(rows: Sequence[tuple[str, Any]], *, title: str) -> Any:
    """Per row (a model) two scatters of the 2-D embedding ``(sample, component)``: coloured by degradation
    label, and by background image."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 2, figsize=(8.4, 2.9 * len(rows)), squeeze=False, layout="constrained")
    labels = sorted({str(v) for _, emb in rows for v in emb.coords["degradation"].values})
    cmap = plt.get_cmap("tab10")
    deg_color = {label: cmap(i % 10) for i, label in enumerate(labels)}
    n_bg = max(int(np.max(emb.coords["background"].values)) + 1 for _, emb in rows)
    bg_cmap = plt.get_cmap("Dark2" if n_bg <= 8 else "turbo")  # not the degradation palette

    def bg_color(b: int) -> Any:
        return bg_cmap(b % 8) if n_bg <= 8 else bg_cmap(b / max(1, n_bg - 1))

    for i, (name, emb) in enumerate(rows):
        xy = np.asarray(emb.values, dtype=float)
        deg = np.array([str(v) for v in emb.coords["degradation"].values])
        bg = np.asarray(emb.coords["background"].values).astype(int)
        explained = emb.coords["explained_variance_ratio"].values if "explained_variance_ratio" in emb.coords \
            else None
        ax = axes[i][0]
        for label in labels:
            sel = deg == label
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=deg_color[label], label=label, alpha=0.85,
                           edgecolors="none")
        ax.set_title(f"{name}: by degradation", fontsize=9)
        ax = axes[i][1]
        ax.scatter(xy[:, 0], xy[:, 1], s=18, c=[bg_color(b) for b in bg], marker="s", alpha=0.85,
                   edgecolors="none")
        ax.set_title(f"{name}: by background image", fontsize=9)
        for ax in axes[i]:
            xl, yl = "component 1", "component 2"
            if explained is not None and np.all(np.isfinite(explained)):
                xl, yl = f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})"
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8)
            ax.tick_params(labelsize=7)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], linestyle="", marker="o", color=deg_color[label], label=label)
                        for label in labels], loc="outside right upper", fontsize=7, title="degradation",
               title_fontsize=7)
    if n_bg <= 12:
        fig.legend(handles=[Line2D([], [], linestyle="", marker="s", color=bg_color(b), label=f"image {b}")
                            for b in range(n_bg)], loc="outside right lower", fontsize=7,
                   title="background", title_fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig


def versus_n(frame: pd.DataFrame, *, panels: Sequence[str], labels: dict[str, str], title: str,
             hlines: dict[str, float] | None = None, legend_title: str = "background source") -> Any:
    """One panel per quantity (``panel`` column): value vs ``n_backgrounds`` (log2), one line per ``group``
    (mean over seeds, seeds as dots)."""
    plt = _plt()
    hlines = hlines or {}
    groups = list(dict.fromkeys(frame["group"]))
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.2, 3.0), squeeze=False,
                             layout="constrained")
    for j, panel in enumerate(panels):
        ax = axes[0][j]
        part = frame[frame["panel"] == panel]
        for g, group in enumerate(groups):
            rows = part[part["group"] == group]
            line = rows[rows["n_backgrounds"].notna()]
            color = cmap(g % 10)
            if not line.empty:
                ax.scatter(line["n_backgrounds"], line["value"], s=10, color=color, alpha=0.5)
                mean = line.groupby("n_backgrounds")["value"].mean()
                ax.plot(mean.index, mean.to_numpy(), "-o", color=color, markersize=3.5, label=str(group))
            ext = rows[rows["n_backgrounds"].isna()]  # your networks on this group's source: dashed levels
            for k, (name, value) in enumerate(ext.groupby("name")["value"].mean().items()):
                ax.axhline(value, color=color, linestyle=["--", ":", "-."][k % 3], linewidth=1.1,
                           label=f"yours: {name} ({group})")
        if panel in hlines:
            ax.axhline(hlines[panel], color="grey", linewidth=0.8, linestyle=":")
        known = part["n_backgrounds"].dropna()
        if known.nunique() > 1 and (known > 0).all():
            ax.set_xscale("log", base=2)
        ax.set_xlabel("n_backgrounds (training)", fontsize=8)
        ax.set_ylabel(labels.get(panel, panel).split("\n")[0], fontsize=8)
        ax.set_title(labels.get(panel, panel), fontsize=9)
        ax.grid(alpha=0.25)
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside right center", fontsize=8, title=legend_title,
                   title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig
