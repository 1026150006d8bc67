"""ID vs OOD decomposition bars per split and training set size, in the study's task's quantities
(rain: rain-removal and background errors; noise: noise removed in flat / textured regions and detail kept;
blur: blur removed at edges and detail restored per frequency band — :class:`probe.tasks.Task`).

One facet row per evaluation source: the grid's models of that background source and, beside them, the external
networks' results on that source's images (never pooled over sources); results on real pairs get their own
row."""

from __future__ import annotations

import pandas as pd

from probe.analysis.sources import with_source
from probe.report.context import ReportContext, Section, display_names, with_axes, without_axes


def decomposition_bars(ctx: ReportContext) -> Section | None:
    task = ctx.task
    metrics = [m for m, _, _ in task.bars]
    log = all(lg for _, _, lg in task.bars)
    dec = ctx.probe_metrics("decomposition")
    dec = dec[dec["metric"].isin(metrics) & (dec["split"] != "clean")] if len(dec) else dec
    if dec.empty:
        return None
    # x: n_backgrounds for grid models, the display name for external networks (placed after the grid)
    dec = dec[with_axes(dec) | without_axes(dec)]  # the grid and external networks (anchors: own section)
    if dec.empty:
        return None
    ext = without_axes(dec)
    n = pd.to_numeric(dec["n_backgrounds"], errors="coerce") if "n_backgrounds" in dec else None
    dec = dec.assign(model_x=[name if e else str(int(v)) for name, e, v in
                              zip(display_names(dec), ext, n if n is not None else [0] * len(dec))])
    order = sorted(set(dec.loc[~ext, "model_x"]), key=int) + sorted(set(dec.loc[ext, "model_x"]))
    dec = with_source(dec)  # a grid model's rows: its own background; an external network's: the source of
    # each result (it is measured on every source), so each facet holds one source's grid and external bars
    sources = list(dict.fromkeys([*sorted(set(dec.loc[~ext, "source"])), *sorted(set(dec.loc[ext, "source"]))]))
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    grid = sns.catplot(data=dec, kind="bar", x="model_x", order=order, y="value", hue="split", col="metric",
                       col_order=[m for m in metrics if m in set(dec["metric"])],
                       row="source", row_order=sources, sharey=False, height=2.8,
                       aspect=1.3, errorbar=None)
    if log:
        grid.set(yscale="log")
    for ax in grid.axes.flat:  # network names are longer than n_backgrounds values
        ax.tick_params(axis="x", labelrotation=30)
    grid.set_axis_labels("n_backgrounds (grid) / network", "MSE" if log else "ratio")
    labels = {m: label for m, label, _ in task.bars}
    title = "rain-removal (mse_rain) and background (mse_bg) errors" if task.decomposition == "rain" else \
        f"{task.task}: " + ", ".join(labels[m] for m in metrics)
    grid.figure.suptitle(f"{title}, ID vs OOD", y=1.02)
    return Section("ID vs OOD decomposition", figures=[ctx.save(
        grid.figure, "decomposition_bars", "ID vs OOD decomposition", task.bars_caption + (
            " One row per evaluation source: your networks' bars (their results on that source's images) beside "
            "that source's grid bars; compare bars of the same row only." if ext.any() else ""))])
