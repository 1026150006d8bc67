"""ID vs OOD decomposition bars: rain-removal and background errors per split, per training set size."""

from __future__ import annotations

from probe.report.context import ReportContext, Section


def decomposition_bars(ctx: ReportContext) -> Section | None:
    dec = ctx.probe_metrics("decomposition")
    dec = dec[dec["metric"].isin(["mse_rain", "mse_bg"]) & (dec["split"] != "clean")] if len(dec) else dec
    if dec.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    grid = sns.catplot(data=dec, kind="bar", x="n_backgrounds", y="value", hue="split", col="metric",
                       row="background" if "background" in dec else None, sharey=False, height=2.8,
                       aspect=1.3, errorbar=None)
    grid.set(yscale="log")
    grid.set_axis_labels("n_backgrounds", "MSE")
    grid.figure.suptitle("rain-removal (mse_rain) and background (mse_bg) errors, ID vs OOD", y=1.02)
    return Section("ID vs OOD decomposition", figures=[ctx.save(
        grid.figure, "decomposition_bars", "ID vs OOD decomposition",
        "Shortcut learning shows as mse_rain rising on OOD splits while mse_bg stays low.")])
