"""Remedies: does each of paper B's remedies improve unseen-rain removal at equal budget, at what cost?

For a study with a ``remedy`` axis (``none``, ``balanced*``, ``prior``; see ``analyses/remedies.toml``), every
remedy is compared with ``none`` trained with the same seed (a paired design): per seed, the difference
in the OOD removal ratio (decomposition probe; 1 = all rain removed) on every OOD split and in the
background PSNR on the ID split (dB, outside the rain mask). The mean difference carries a 95 % percentile
bootstrap CI over seeds (``scipy.stats.bootstrap``, 9 999 resamples, fixed seed) and a Student-t 95 %
interval. With few seeds the bootstrap CI is coarse and too narrow: with 3 seeds it excludes 0 whenever
the three differences share a sign, a 25 % false-positive rate when nothing changes. The verdict therefore
reads "better" / "worse" only when *both* intervals exclude 0 (the t-interval governs at small n; its
false-positive rate is the nominal 5 % for normal differences), "unclear" otherwise.

A remedy *helps* only if it does both things paper B claims for it (issue 23): it removes more unseen rain
("better" on at least one OOD split, "worse" on none) *and* keeps the background — its clean-input PSNR (the
network on rain-free inputs) within ``KEEP_DB`` = 1 dB of the baseline's, paired by seed, or at least
``INVISIBLE_DB`` = 20·log10(255) ≈ 48.1 dB (an RMS change below one 8-bit grey level, invisible in any saved
image: a baseline that is near the identity on clean inputs, 60 dB, makes a 10 dB "loss" to 50 dB no loss of
background at all — seen on the long remedies pilot). A remedy that
removes more rain by rewriting the image (a weak content prior draws every output, rain or not, from what
it can reconstruct) is reported as "rewrites the image", not as a remedy.

A content prior that cannot reconstruct clean images tests its own weakness, not the remedy: the section
lists every prior the grid trained (``study.json`` ``priors``: its held-out reconstruction PSNR at its training
patch size) and says so when one is below ``PRIOR_DB`` = 30 dB.

The shortcut indicators of each remedy (means over seeds) are the decomposition probe's: correlation of
the removed part with the true rain layer and with the background on OOD rain (a network that learned the
rain removes little of unseen rain; one that learned the content removes what is not content), the content
damage, and what the network removes from clean images. Returns ``None`` when the store has no ``remedy``
axis, so other studies' reports do not change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.report.context import ID_SPLIT, ReportContext, Section, Table

BASELINE = "none"
CONFIDENCE = 0.95
N_RESAMPLES = 9999
KEEP_DB = 1.0  # the most clean-input PSNR (dB) a remedy may lose against the baseline and still "keep the background"
INVISIBLE_DB = float(20 * np.log10(255.0))  # clean-input PSNR (dB) above which the change is < 1 grey level RMS
PRIOR_DB = 30.0  # the held-out reconstruction PSNR (dB) below which a content prior is too weak to test the remedy
INDICATORS = ["removal_ratio", "corr_removed_layer", "corr_removed_background", "content_damage"]


def bootstrap_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap CI of the mean of ``values`` (NaN, NaN with fewer than 2 values)."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = bootstrap((values,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                    method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95 % Student-t interval of the mean (NaN, NaN with fewer than 2 values)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def verdict(low: float, high: float) -> str:
    """'better' / 'worse' when the interval [low, high] excludes 0, else 'unclear' ('n/a' if undefined)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return "better" if low > 0 else "worse" if high < 0 else "unclear"


def _per_seed(frame: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    """remedy × seed table of one decomposition metric on one split."""
    rows = frame[(frame["split"] == split) & (frame["metric"] == metric)]
    seed = "seed" if "seed" in rows else "model_id"
    return rows.groupby(["remedy", seed])["value"].mean().unstack(seed)


def remedy_effects(metrics: pd.DataFrame, ood_splits: list[str]) -> pd.DataFrame:
    """One row per remedy × quantity: paired mean difference vs ``none`` with its bootstrap CI."""
    dec = metrics[metrics["probe"] == "decomposition"]
    quantities = [(s, "removal_ratio", f"OOD removal ratio: {s}") for s in ood_splits]
    quantities.append((ID_SPLIT, "psnr_bg_region", "ID background PSNR (dB)"))
    quantities.append(("clean", "psnr", CLEAN_LABEL))
    rows = []
    for split, metric, label in quantities:
        table = _per_seed(dec, split, metric)
        if BASELINE not in table.index:
            continue
        base = table.loc[BASELINE]
        for remedy in [r for r in table.index if r != BASELINE]:
            diff = (table.loc[remedy] - base).dropna()
            low, high = bootstrap_ci(diff.to_numpy())
            t_low, t_high = t_interval(diff.to_numpy())
            rows.append({"remedy": remedy, "quantity": label, "n_seeds": int(diff.size),
                         "none": float(base[diff.index].mean()) if diff.size else float("nan"),
                         "remedy_value": float(table.loc[remedy][diff.index].mean()) if diff.size else float("nan"),
                         "delta": float(diff.mean()) if diff.size else float("nan"),
                         "ci_low": low, "ci_high": high, "t_low": t_low, "t_high": t_high,
                         "verdict": verdict(min(low, t_low), max(high, t_high))})
    return pd.DataFrame(rows)


CLEAN_LABEL = "clean-input PSNR (dB)"


def remedy_verdicts(effects: pd.DataFrame) -> pd.DataFrame:
    """One row per remedy: does it help — more unseen rain removed *and* the background kept?

    ``effects`` is :func:`remedy_effects`' table. Columns: ``ood_better`` / ``ood_worse`` (counts of OOD
    splits), ``clean_psnr_delta`` (dB, mean paired change of the clean-input PSNR, NaN when the store has
    no clean split) with its bootstrap CI, ``clean_psnr`` (dB, the remedy's mean clean-input PSNR),
    ``background_kept`` (delta >= -``KEEP_DB`` or clean_psnr >= ``INVISIBLE_DB``), and ``verdict``:
    "helps", "rewrites the image" (more removed, background lost), "no gain" (kept, not more removed),
    "no gain, rewrites the image", or "n/a" (no clean-input measurement: the background cannot be judged).
    """
    rows = []
    for remedy, group in effects.groupby("remedy", sort=False):
        ood = group[group["quantity"].str.startswith("OOD")]
        clean = group[group["quantity"] == CLEAN_LABEL]
        better, worse = int((ood["verdict"] == "better").sum()), int((ood["verdict"] == "worse").sum())
        row = clean.iloc[0] if len(clean) else pd.Series(dtype=float)
        delta, level = (float(row.get(k, np.nan)) for k in ("delta", "remedy_value"))
        removes = better > 0 and worse == 0
        if not np.isfinite(delta):
            kept, text = None, "n/a"
        else:
            kept = bool(delta >= -KEEP_DB or level >= INVISIBLE_DB)
            text = ("helps" if removes and kept else "rewrites the image" if removes
                    else "no gain" if kept else "no gain, rewrites the image")
        rows.append({"remedy": remedy, "ood_better": better, "ood_worse": worse, "n_ood_splits": len(ood),
                     "clean_psnr_delta": delta, "clean_psnr": level,
                     "clean_ci_low": float(row.get("ci_low", np.nan)),
                     "clean_ci_high": float(row.get("ci_high", np.nan)),
                     "background_kept": kept, "verdict": text})
    return pd.DataFrame(rows)


def shortcut_indicators(metrics: pd.DataFrame, ood_splits: list[str]) -> pd.DataFrame:
    """One row per remedy: decomposition indicators on OOD rain (mean over OOD splits and seeds), ID
    background PSNR, and PSNR / removed energy on clean inputs."""
    dec = metrics[metrics["probe"] == "decomposition"]
    rows = []
    for remedy, group in dec.groupby("remedy"):
        ood = group[group["split"].isin(ood_splits)]
        row = {"remedy": remedy, "n_models": int(group["model_id"].nunique())}
        for metric in INDICATORS:
            row[f"ood_{metric}"] = float(ood[ood["metric"] == metric]["value"].mean())
        idb = group[(group["split"] == ID_SPLIT) & (group["metric"] == "psnr_bg_region")]["value"]
        row["id_psnr_bg"] = float(idb.mean())
        for metric in ("psnr", "removed_energy"):
            value = group[(group["split"] == "clean") & (group["metric"] == metric)]["value"]
            row[f"clean_{metric}"] = float(value.mean())
        rows.append(row)
    order = {BASELINE: 0}
    return pd.DataFrame(rows).sort_values("remedy", key=lambda s: s.map(lambda r: (order.get(r, 1), r)))


def prior_table(study: dict | None) -> pd.DataFrame:
    """One row per content prior the grid trained: held-out PSNR (dB) at its training patch, and whether it
    reaches ``PRIOR_DB``; empty when the study record names none."""
    priors = (study or {}).get("priors") or {}
    rows = []
    for name, entry in priors.items():
        entry = entry if isinstance(entry, dict) else {}
        psnr = entry.get("psnr_test")
        psnr = float(psnr) if isinstance(psnr, (int, float)) else float("nan")
        rows.append({"prior": name, "out": entry.get("out"), "patch": entry.get("patch"),
                     "iterations": entry.get("iterations"), "size": entry.get("size"), "psnr_test": psnr,
                     "reconstructs": bool(psnr >= PRIOR_DB) if np.isfinite(psnr) else None})
    return pd.DataFrame(rows)


def _figure(ctx: ReportContext, effects: pd.DataFrame):
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(effects["quantity"]))
    remedies = list(dict.fromkeys(effects["remedy"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.2), squeeze=False)
    for ax, label in zip(axes[0], labels):
        part = effects[effects["quantity"] == label].set_index("remedy").reindex(remedies)
        err = np.vstack([part["delta"] - part["ci_low"], part["ci_high"] - part["delta"]])
        ax.bar(range(len(remedies)), part["delta"], yerr=np.nan_to_num(np.abs(err)), capsize=3,
               color=["tab:green" if v == "better" else "tab:red" if v == "worse" else "tab:gray"
                      for v in part["verdict"]])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(remedies)), remedies, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0][0].set_ylabel(f"change vs '{BASELINE}' ({int(CONFIDENCE * 100)} % CI over seeds)")
    fig.tight_layout()
    return ctx.save(fig, "remedies", "Remedies vs none",
                    "Paired change per seed vs the 'none' baseline; bars: mean, whiskers: bootstrap CI; green: "
                    "CI above 0, red: below 0.")


def remedies(ctx: ReportContext) -> Section | None:
    metrics = ctx.metrics
    if not len(metrics) or "remedy" not in metrics or metrics["remedy"].dropna().empty:
        return None
    metrics = metrics[metrics["remedy"].notna()].copy()
    metrics["remedy"] = metrics["remedy"].astype(str)
    if metrics[metrics["probe"] == "decomposition"].empty:
        return None
    ood = ctx.ood_splits()
    effects = remedy_effects(metrics, ood)
    indicators = shortcut_indicators(metrics, ood)
    tables = [Table("remedy_indicators", "Shortcut indicators per remedy", indicators.round(4),
                    "Means over seeds (and OOD splits). ood_corr_removed_layer: correlation of the removed part "
                    "with the true rain layer; ood_corr_removed_background: with the background; clean_*: the "
                    "network on rain-free inputs (a network that learned content leaves them alone).")]
    priors = prior_table(ctx.study)
    if not priors.empty:
        tables.append(Table("remedy_priors", "Content priors", priors.round(2),
                            f"Held-out reconstruction PSNR of each prior on clean crops of its training patch size "
                            f"(prior.json); below {PRIOR_DB:g} dB the prior cannot draw the backgrounds, so the "
                            f"prior remedy's result says more about the prior than about the remedy."))
    figures = []
    if effects.empty:
        text = f"No '{BASELINE}' baseline in the store: the remedies cannot be compared."
    else:
        tables.insert(0, Table("remedy_effects", "Change vs no remedy (paired by seed)", effects.round(4),
                               f"delta = mean over seeds of (remedy − {BASELINE}); {int(CONFIDENCE * 100)} % "
                               f"percentile bootstrap CI over seeds (ci_*) and Student-t interval (t_*); "
                               f"verdict 'better'/'worse' when both exclude 0 (for PSNR, 'worse' = lower "
                               f"background fidelity)."))
        verdicts = remedy_verdicts(effects)
        tables.insert(0, Table("remedy_verdicts", "Does each remedy help?", verdicts.round(4),
                               f"helps = more unseen rain removed (verdict 'better' on >= 1 OOD split, 'worse' "
                               f"on none) AND the background kept (clean-input PSNR at most {KEEP_DB:g} dB "
                               f"below '{BASELINE}', mean paired change, or at least {INVISIBLE_DB:.1f} dB: "
                               f"under one 8-bit grey level RMS); 'rewrites the image' = more removed "
                               f"but the background lost."))
        figures.append(_figure(ctx, effects))
        text = _summary(effects, verdicts)
    weak = priors[priors["reconstructs"].eq(False)] if not priors.empty else priors
    for _, row in weak.iterrows():
        text += (f" Content prior {row['prior']!r} reconstructs held-out clean crops at only {row['psnr_test']:.1f} dB "
                 f"(< {PRIOR_DB:g} dB at {row['patch']} px): the prior remedy is limited by this prior, not "
                 "tested; train it longer or larger.")
    return Section("Remedies", figures=figures, tables=tables, text=text)


def _summary(effects: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    parts = []
    said = dict(zip(verdicts["remedy"], verdicts["verdict"]))
    deltas = dict(zip(verdicts["remedy"], verdicts["clean_psnr_delta"]))
    for remedy, group in effects.groupby("remedy", sort=False):
        ood = group[group["quantity"].str.startswith("OOD")]
        bg = group[group["quantity"] == "ID background PSNR (dB)"]
        better = int((ood["verdict"] == "better").sum())
        text = (f"{remedy}: OOD removal better on {better}/{len(ood)} OOD splits "
                f"(mean change {ood['delta'].mean():+.3f})")
        if not bg.empty:
            row = bg.iloc[0]
            text += (f", ID background PSNR {row['delta']:+.2f} dB [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
                     f" ({row['verdict']})")
        if np.isfinite(deltas.get(remedy, float("nan"))):
            text += f", clean-input PSNR {deltas[remedy]:+.2f} dB"
        text += f": {said.get(remedy, 'n/a')}"
        parts.append(text)
    return ("Paper B's remedies at equal training budget, paired by seed with the no-remedy baseline "
            f"(helps = more unseen rain removed and the clean-input PSNR within {KEEP_DB:g} dB of it or above "
            f"{INVISIBLE_DB:.1f} dB, an invisible change). "
            + "; ".join(parts) + ".")
