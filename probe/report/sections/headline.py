"""Headline section: renders the statistics of :mod:`probe.analysis.headline` (background complexity and
n_backgrounds vs removal of an unseen degradation, with CIs and permutation p) in the study's words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.analysis.headline import (  # noqa: F401 - re-exported: the section renders these numbers
    COMPLEXITY,
    N_BOOT,
    N_PERM,
    SEED,
    _trained,
    cells,
    complexity_by_measure,
    complexity_numbers,
    headline_numbers,
    source_differences,
)
from probe.report.context import ReportContext, Section, Table


def complexity_verdict(table: pd.DataFrame) -> str:
    """One clause per OOD split: ρ(complexity, OOD removal) with CI and p, and whether ρ < 0 holds with its
    95 % CI below 0 (the papers' prediction)."""
    if table.empty:
        return ""
    parts = []
    for _, row in table.iterrows():
        prefix = "spearman_complexity_vs_ood_removal"
        v, lo, hi, p = (row[prefix], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"], row[f"{prefix}_p"])
        if not np.isfinite(v):
            parts.append(f"{row['ood_split']}: not computable ({row.get('note') or 'no variation'})")
            continue
        ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else " (no CI)"
        holds = "HOLDS (CI below 0)" if np.isfinite(hi) and hi < 0 else "does NOT hold (CI reaches 0)"
        fam = f"{row['family']}, " if row.get("family") is not None and str(row.get("family")) != "nan" else ""
        parts.append(f"{fam}{row['ood_split']}: ρ = {v:.2f}{ci}, p = {p:.3g}, {row['n_models']} models — {holds}")
    return "; ".join(parts) + "."


def complexity_readable(table: pd.DataFrame, task=None) -> pd.DataFrame:
    """The complexity headline as printed (value [95% CI], p)."""
    from probe.tasks import get_task

    task = task or get_task(None)
    out = table[[c for c in ("family", "ood_split", "sources", "n_models") if c in table]].copy()
    out["ρ(complexity, OOD removal)"] = _ci_text(table, "spearman_complexity_vs_ood_removal")
    out["p"] = table["spearman_complexity_vs_ood_removal_p"].map(lambda p: f"{p:.3g}")
    if "spearman_complexity_vs_fidelity" in table:
        out[f"ρ(complexity, {task.fidelity_label})"] = _ci_text(table, "spearman_complexity_vs_fidelity")
        out["p "] = table["spearman_complexity_vs_fidelity_p"].map(lambda p: f"{p:.3g}")
    return out


def verdict(table: pd.DataFrame, task=None) -> str:
    """One sentence per OOD split: does ρ(n, OOD removal) < 0 hold with its CI on every source? (Worded
    for ``task``, a :class:`probe.tasks.Task`; rain when None.)"""
    from probe.tasks import get_task

    task = task or get_task(None)
    if table.empty:
        return ""
    parts = []
    for split, part in table.groupby("ood_split"):
        hi = part["spearman_n_vs_ood_removal_ci_high"]
        if hi.isna().all():
            notes = sorted({str(n) for n in part.get("note", pd.Series(dtype=str)) if str(n)})
            parts.append(f"{split}: no CI ({'; '.join(notes) or 'not computable'})")
            continue
        holds = part[hi < 0]["background"].tolist() if "background" in part else []
        fails = part[~(hi < 0)]["background"].tolist() if "background" in part else []
        parts.append(f"{split}: ρ(n, OOD removal) < 0 with its 95% CI below 0 on "
                     f"{', '.join(holds) or 'no source'}" + (f"; not on {', '.join(fails)}" if fails else ""))
    return "; ".join(parts) + "."


def _ci_text(frame: pd.DataFrame, prefix: str) -> pd.Series:
    def fmt(row: pd.Series) -> str:
        v, lo, hi = row[prefix], row.get(f"{prefix}_ci_low"), row.get(f"{prefix}_ci_high")
        if not np.isfinite(v):
            return "–"
        return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else f"{v:.2f}"
    return frame.apply(fmt, axis=1)


def readable(table: pd.DataFrame, task=None) -> pd.DataFrame:
    """The headline as printed (value [95% CI] and p), for the report page and ``probe demo``; column labels
    in the words of ``task`` (:class:`probe.tasks.Task`; rain when None)."""
    from probe.tasks import get_task

    task = task or get_task(None)
    out = table[[c for c in ("family", "background", "ood_split", "n_backgrounds", "seeds_per_n") if c in table]]
    out = out.copy()
    out["ρ(n, OOD removal)"] = _ci_text(table, "spearman_n_vs_ood_removal")
    out["p"] = table["spearman_n_vs_ood_removal_p"].map(lambda p: f"{p:.3g}")
    out[f"ρ(n, {task.fidelity_label})"] = _ci_text(table, "spearman_n_vs_bg_psnr")
    out["p "] = table["spearman_n_vs_bg_psnr_p"].map(lambda p: f"{p:.3g}")
    out["OOD removal, fewest"] = _ci_text(table, "ood_removal_fewest")
    out["OOD removal, most"] = _ci_text(table, "ood_removal_most")
    return out


def external_only_text(external: pd.DataFrame, task=None) -> str:
    """The headline's one line for a store of external networks alone (no trained grid: no statistic over
    models to compute): what the section shows instead, and each network's PSNR (and its code base's
    ``psnr_codebase`` when measured) per source and split. ``external``: :func:`external_table`."""
    from probe.tasks import get_task

    task = task or get_task(None)
    ext = external[external["kind"] == "external"]
    where = "real pairs alone" if set(ext["source"]) == {"real pairs"} else "without a trained grid"
    parts = []
    for _, row in ext.iterrows():
        numbers = [f"{label} {row[col]:.2f} dB" for col, label in (("psnr", "PSNR"), ("psnr_codebase",
                   "psnr_codebase")) if col in row and pd.notna(row[col])]
        place = row["split"] if row["source"] == "real pairs" else f"{row['source']} / {row['split']}"
        parts.append(f"{row['model']} on {place}: " + (", ".join(numbers) or "no PSNR stored"))
    return (f"Your network(s) measured on {where}: no grid models, so no statistic of background complexity or "
            f"n_backgrounds vs removal of {task.unseen} — the table below gives each network's decoupled metrics "
            "per split (probe's PSNR; psnr_codebase: as its code base computes it). " + "; ".join(parts) + ".")


def headline(ctx: ReportContext) -> Section | None:
    from probe.report.sections.external import external_table

    table = headline_numbers(ctx.metrics)
    task = ctx.task
    tables, text = [], ""
    by_measure = complexity_by_measure(ctx.metrics)  # the headline's measure is one of its rows
    overall = by_measure[by_measure["measure"] == COMPLEXITY].reset_index(drop=True) if len(by_measure) \
        else by_measure
    if not overall.empty:
        text = (f"{task.task.capitalize()}, the headline: Spearman ρ between the measured complexity of a model's "
                f"training backgrounds (PNG bits per pixel; it differs by source and, less, with n) and the fraction "
                f"of {task.unseen} (OOD) it removes, over every trained model. The papers' shortcut effect reads "
                f"as ρ < 0: networks trained on more complex backgrounds learn the {task.noun} and miss unseen "
                f"{task.noun}. " + complexity_verdict(overall) + " ")
        tables.append(Table("headline_complexity", f"Background complexity vs removal of {task.unseen} "
                            "(95% CI, permutation p)", complexity_readable(overall, task),
                            caption="Brackets: 95% bootstrap CI over seeds (models resampled within each "
                            "background × n_backgrounds cell); p: two-sided permutation test. Every number: "
                            "headline_complexity_full.csv."))
        tables.append(Table("headline_complexity_full", "Complexity headline, every number", overall.round(4)))
        if by_measure["measure"].nunique() > 1:
            shown = complexity_readable(by_measure, task)
            shown.insert(1, "measure", by_measure["measure"].str.removeprefix("complexity_"))
            tables.append(Table("headline_complexity_measures", "The same under every complexity measure", shown,
                                caption="The headline ranks backgrounds by PNG bits per pixel (chosen before any "
                                "three-source study was scored). Measures that order two sources differently change "
                                "ρ: read the rows together; the measured values per model are in metrics.csv."))
    if not table.empty:
        text += (f"Within each source: Spearman ρ between the number of training backgrounds and (a) the "
                f"fraction of {task.unseen} (OOD) removed, (b) {task.fidelity_where} on in-distribution "
                f"{task.noun}; one point per trained model. The papers' shortcut effect reads as ρ(n, OOD "
                f"removal) < 0 — more (complex) backgrounds, less generalization — with ρ(n, "
                f"{task.fidelity_label}) ≥ 0. Brackets: 95% bootstrap CI over seeds (models resampled within "
                "each n); p: two-sided permutation test. " + verdict(table, task))
        tables += [Table("headline_ci", f"Within each source: n_backgrounds vs removal of {task.unseen} (95% CI, "
                         "permutation p)",
                        readable(table, task),
                        caption="Every number at full precision: the next table and headline.csv."),
                  Table("headline", "Within each source, every number", table.round(4))]
    gaps = source_differences(ctx.metrics) if not (overall.empty and table.empty) else pd.DataFrame()
    if not gaps.empty:
        tables.append(Table("source_differences", f"OOD {task.noun} removal gap between background sources",
                            gaps.round(4), caption="difference = mean OOD removal of source_a − source_b "
                            "(pooled over n_backgrounds) with a 95% bootstrap CI over seeds, permutation p, "
                            "Hedges' g."))
    external = external_table(ctx.metrics)
    if not external.empty:
        tables.append(Table("external_models", "Your networks beside the grid, per source: decoupled metrics "
                            "per split", external, "Networks measured from their own checkpoints on every "
                            "background source of the study (the same images, splits and rain as that source's "
                            "grid models), beside the grid's models of that source with the fewest and the most "
                            "training backgrounds per family. "
                            "removal_ratio: fraction of the degradation removed where it was (1 = all). "
                            "evaluation: synthetic = the study's splits (the grid's images); real pairs = "
                            "--eval-folder folders. Compare rows of the same source only. "
                            "psnr_codebase / ssim_codebase (test sets of a BasicSR option file): PSNR / SSIM as "
                            "that code base computes them (8-bit, crop_border, Y channel: its val.metrics) — the "
                            "numbers to compare with its paper."))
    from probe.analysis.external import external_choices

    choices = external_choices(ctx.metrics)
    if not choices.empty:
        tables.append(Table("external_outputs", "Your networks: what is measured", choices,
                            "Which output of each network is measured and why (chosen on a synthetic probe batch "
                            "by PSNR against the clean image and against the input, or given with --output), "
                            "and how the network behaved on it."))
    from probe.report.sections.ntrend import ntrend_parts  # the headline figure when a study varies n

    figures, ntrend_tables, ntrend_text = ntrend_parts(ctx)
    tables, text = ntrend_tables + tables, ntrend_text + text
    if not text.strip() and not external.empty:  # external networks alone: say what the section shows
        text = external_only_text(external, task)
    if not tables:
        return None
    return Section("Headline", figures=figures, tables=tables, text=text)
