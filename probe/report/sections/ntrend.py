"""The n-trend figure and tables of the headline (when a study varies n over ≥ 3 values): both sides of the
trade-off vs the number of training backgrounds, per source, with 95 % bootstrap CIs over seeds, and where
unseen-degradation removal turns. Numbers: :func:`probe.analysis.ntrend.ntrend_numbers`."""

from __future__ import annotations

import pandas as pd

from probe.report.context import Figure, ReportContext, Table


def _plot(ctx: ReportContext, curves: pd.DataFrame) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = ctx.task
    panels = [("id_fidelity", "id")] + [("ood_removal", s) for s in sorted(set(curves.loc[
        curves["side"] == "ood_removal", "split"]))]
    families = sorted(curves["family"].dropna().unique()) if "family" in curves else [None]
    fig, axes = plt.subplots(len(families), len(panels), figsize=(3.8 * len(panels), 3.0 * len(families)),
                             squeeze=False)
    for i, family in enumerate(families):
        for j, (side, split) in enumerate(panels):
            ax = axes[i][j]
            part = curves[(curves["side"] == side) & (curves["split"] == split)]
            if family is not None:
                part = part[part["family"] == family]
            for k, (source, line) in enumerate(part.groupby("background") if "background" in part else []):
                line = line.sort_values("n")
                ax.errorbar(line["n"], line["mean"], yerr=[line["mean"] - line["ci_low"].fillna(line["mean"]),
                                                           line["ci_high"].fillna(line["mean"]) - line["mean"]],
                            marker="o", capsize=3, color=f"C{k}", label=str(source))
            ax.set_xscale("log", base=2)
            ax.set_xlabel("distinct training backgrounds n")
            metric = part["metric"].iloc[0] if len(part) else ""
            ax.set_ylabel(f"{task.fidelity_label} (ID)" if side == "id_fidelity" else f"{metric} ({split})")
            ax.set_title((f"{family}: " if family else "") + (f"background side ({task.noun} seen in training)"
                         if side == "id_fidelity" else f"removal of {task.unseen}: {split}"), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return ctx.save(fig, "headline_ntrend", f"The n-trend: both sides of the trade-off vs n ({task.task})",
                    caption="Mean over seeds at each n with its 95% bootstrap CI (models resampled within each "
                    f"n). Left: {task.fidelity_where} on held-out backgrounds of the training source, with the "
                    f"training {task.noun} (the papers predict it rises with n). Right: the fraction of the "
                    f"{task.unseen} removed (the papers predict it falls with n).")


def ntrend_parts(ctx: ReportContext) -> tuple[list[Figure], list[Table], str]:
    """``(figures, tables, text)`` of the n-trend, or empty parts when the study does not vary n."""
    from probe.analysis.ntrend import ntrend_numbers

    curves, turns = ntrend_numbers(ctx.metrics)
    if curves.empty or turns.empty:
        return [], [], ""
    task = ctx.task
    shown = turns.copy()
    readable = pd.DataFrame({k: shown[k] for k in ("family", "background", "ood_split") if k in shown})
    readable["shape"] = shown["shape"]
    readable["removal turns at n"] = shown.apply(
        lambda r: f"{r['n_peak']} [{r['n_peak_ci_low']:.0f}, {r['n_peak_ci_high']:.0f}]", axis=1)
    readable["removal, smallest → largest n"] = shown.apply(
        lambda r: f"{r['removal_smallest_n']:.3f} → {r['removal_largest_n']:.3f}", axis=1)
    readable["change"] = shown.apply(
        lambda r: f"{r['change']:+.3f} [{r['change_ci_low']:+.3f}, {r['change_ci_high']:+.3f}]", axis=1)
    readable["change, t-interval"] = shown.apply(
        lambda r: f"[{r['change_t_low']:+.3f}, {r['change_t_high']:+.3f}]", axis=1)
    readable[f"{task.fidelity_label} change"] = shown.apply(
        lambda r: f"{r['fidelity_change']:+.2f} [{r['fidelity_change_ci_low']:+.2f}, "
                  f"{r['fidelity_change_ci_high']:+.2f}]", axis=1)
    text = (f"The n-trend (the papers' central experiment): removal of {task.unseen} and {task.fidelity_where} "
            "vs the number of distinct training backgrounds n, per source. " + ntrend_verdict(turns, task) + " ")
    tables = [Table("headline_ntrend", f"Where removal of {task.unseen} turns with n (95% CI over seeds)",
                    readable, caption="turns at n: the n of the highest mean removal, with the percentile "
                    "interval of that n over seed resamples. change: removal at the largest n minus at the "
                    "smallest, 95% bootstrap CI over seeds and Welch t-interval (shape 'falls' when both are below "
                    "0 — the papers' direction —, 'rises' when both are above, 'turns' for an interior peak "
                    "with a real rise before and fall after it, else 'flat'). Every "
                    "number: headline_ntrend_full.csv and headline_ntrend_curves.csv."),
              Table("headline_ntrend_full", "n-trend, every number", turns.round(4)),
              Table("headline_ntrend_curves", "n-trend curves, every number", curves.round(4))]
    return [_plot(ctx, curves)], tables, text


def ntrend_verdict(turns: pd.DataFrame, task) -> str:
    """One clause per source × OOD split: the shape of the removal curve and the ID side's change."""
    parts = []
    for _, r in turns.iterrows():
        where = f"{r.get('background', '')}/{r['ood_split']}"
        if r["shape"] == "n/a":
            parts.append(f"{where}: removal {r['removal_smallest_n']:.3f} at the smallest n → "
                         f"{r['removal_largest_n']:.3f} at the largest, no CI (fewer than 2 seeds at some n)")
            continue
        parts.append(f"{where}: removal {r['shape']} ({r['removal_smallest_n']:.3f} at the smallest n → "
                     f"{r['removal_largest_n']:.3f} at the largest, change {r['change']:+.3f} "
                     f"[{r['change_ci_low']:+.3f}, {r['change_ci_high']:+.3f}]; peak at n = {r['n_peak']}), "
                     f"{task.fidelity_label} {r['fidelity_change']:+.2f} "
                     f"[{r['fidelity_change_ci_low']:+.2f}, {r['fidelity_change_ci_high']:+.2f}]")
    return "; ".join(parts) + "."
