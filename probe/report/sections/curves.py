"""Complexity-vs-generalization curves: x = n_backgrounds (log) or measured complexity; one line per source."""

from __future__ import annotations

import pandas as pd

from probe.analysis.external import external_rows
from probe.analysis.sources import REAL
from probe.report.context import ReportContext, Section, with_axes

#: the rain study's quantities; a study's own come from its task (probe.tasks.Task.curves)
QUANTITIES = [
    ("removal_ratio", "rain removed (ratio)", False),
    ("mse_rain", "MSE rain region", True),
    ("mse_bg", "MSE background region", True),
]


def _frame(ctx: ReportContext) -> pd.DataFrame:
    dec = ctx.probe_metrics("decomposition")
    dec = dec[dec["metric"].isin([q for q, _, _ in ctx.task.curves]) & (dec["split"] != "clean")]
    gen = ctx.probe_metrics("generalization")
    gen = gen[gen["metric"] == "psnr"]
    return pd.concat([dec, gen], ignore_index=True)


def _plot(frame: pd.DataFrame, x: str, col: str | None, title: str, log_x: bool,
          refs: pd.DataFrame | None = None, quantities=QUANTITIES):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = [q for q, _, _ in quantities if q in set(frame["metric"])]
    if "psnr" in set(frame["metric"]):
        metrics.append("psnr")
    labels = {q: label for q, label, _ in quantities} | {"psnr": "PSNR (dB)"}
    logs = {q: log for q, _, log in quantities}
    splits = sorted(frame["split"].unique(), key=lambda s: (s != "id", s))
    columns = splits if col is None else sorted(frame[col].dropna().unique())
    fig, axes = plt.subplots(len(metrics), len(columns), figsize=(3.6 * len(columns), 2.8 * len(metrics)),
                             squeeze=False)
    seeds = frame.groupby(["metric", "split", x, "background"]).size().max() if len(frame) else 1
    sources = sorted(frame["background"].dropna().astype(str).unique())
    palette = {b: f"C{k % 10}" for k, b in enumerate(sources)}
    for i, metric in enumerate(metrics):
        for j, column in enumerate(columns):
            ax = axes[i][j]
            part = frame[(frame["metric"] == metric) & (frame[col or "split"] == column)]
            if part.empty:
                ax.set_visible(False)
                continue
            sns.lineplot(data=part.assign(background=part["background"].astype(str)), x=x, y="value",
                         hue="background", hue_order=sources, palette=palette, style="split" if col else None,
                         marker="o", errorbar=("ci", 95) if seeds > 1 else None, n_boot=1000, seed=0, ax=ax)
            if refs is not None and col is None and not refs.empty:  # external networks, per source
                mine = refs[(refs["metric"] == metric) & (refs["split"] == column)]
                styles = {n: s for n, s in zip(sorted(mine["name"].unique()), ["--", ":", "-.", (0, (5, 1))] * 8)}
                for (name, source), value in mine.groupby(["name", "source"])["value"].mean().items():
                    ax.axhline(value, color=palette.get(source, "0.3"), linestyle=styles[name], linewidth=1.2,
                               label=f"{name} on {source}")
                if not mine.empty:
                    ax.legend(fontsize=6)
            if log_x:
                ax.set_xscale("log", base=2)
            if logs.get(metric):
                ax.set_yscale("log")
            ax.set_title(f"{column}" if i == 0 else "")
            ax.set_ylabel(labels[metric])
            ax.set_xlabel(x if i == len(metrics) - 1 else "")
            if ax.get_legend() is not None and not (i == 0 and j == len(columns) - 1):
                ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves(ctx: ReportContext) -> Section | None:
    if ctx.metrics.empty or "n_backgrounds" not in ctx.metrics:
        return None
    frame = _frame(ctx)
    if frame.empty:
        return None
    refs = external_rows(frame)
    refs = refs[refs["source"] != REAL]  # the grid's images only: each source's line beside that source's curve
    frame = frame[with_axes(frame)]
    if frame.empty:
        return None
    task = ctx.task
    section = Section("Complexity vs generalization")
    families = sorted(frame["family"].dropna().unique()) if "family" in frame else []
    for family in families or [None]:
        part = frame if family is None else frame[frame["family"] == family]
        suffix = f"_{family}" if family and len(families) > 1 else ""
        section.figures.append(ctx.save(
            _plot(part, "n_backgrounds", None, f"{family or ''}: {task.task} — generalization vs number of training "
                  "backgrounds", True, refs, task.curves),
            f"curves_n_backgrounds{suffix}", f"Generalization vs n_backgrounds {family or ''}".strip(),
            f"Columns: test splits (id = training {task.noun}, others = {task.unseen}). Lines: background source. "
            "Bands: 95% bootstrap CI of the mean over seeds (one point per trained model); no band when a cell "
            "has one seed. Horizontal lines: your networks measured on each source's own images (colour = the source, "
            "line style = the network), to compare with that source's curve."))
    complexity = "complexity_png_bpp"
    if complexity in frame and frame[complexity].notna().any():
        section.figures.append(ctx.save(
            _plot(frame.dropna(subset=[complexity]), complexity, None,
                  "generalization vs measured training-background complexity (PNG bits/pixel)", False,
                  quantities=task.curves),
            "curves_complexity", "Generalization vs measured background complexity",
            "x: mean PNG bits per pixel of the training backgrounds."))
    if len(families) > 1:
        ood = frame[frame["split"].isin(ctx.ood_splits())]
        section.figures.append(ctx.save(
            _plot(ood, "n_backgrounds", "family", f"model families on {task.unseen}", True,
                  quantities=task.curves),
            "curves_by_family", f"Families side by side on {task.unseen}",
            "Columns: model families; OOD splits only."))
    return section
