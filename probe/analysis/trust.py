"""Trust: replication, calibration anchors and data caveats of a study's numbers, from the store alone.

Calibration anchors are the models :mod:`probe.anchors` stores with model info ``kind = "anchor"`` and
``anchor`` = identity | oracle | untrained | single, one per evaluation set (background source): their values
of the key indicators are shown beside the trained models' range on the same evaluation set, and an indicator
is marked *uninformative* when identity and oracle do not differ by more than 5 % (the rule of
``probe.anchors.separates``): it cannot tell "removes nothing" from "perfect" there. Pure functions;
:mod:`probe.report.sections.trust` renders them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.analysis.headline import _trained
from probe.analysis.rows import ID_SPLIT, is_anchor, ood_split_names, study_task

#: (label, probe, split ("ood" = every OOD split), metric, extra filter)
INDICATORS = [
    ("ID rain removed", "decomposition", ID_SPLIT, "removal_ratio", {}),
    ("OOD rain removed", "decomposition", "ood", "removal_ratio", {}),
    ("background PSNR (ID)", "decomposition", ID_SPLIT, "psnr_bg_region", {}),
    ("change on clean input", "decomposition", "clean", "removed_energy", {}),
    ("CKA rain − clean, deep", "cka", ID_SPLIT, "align_gap_deep", {}),
    ("share on rain (removed part)", "attribution", ID_SPLIT, "share_on_rain", {"window": "on"}),
    ("shortcut score", "shortcut", ID_SPLIT, "score", {}),
]


def indicators(task) -> list[tuple[str, str, str, str, dict]]:
    """:data:`INDICATORS` in the words of ``task`` (:class:`probe.tasks.Task`): its noun, its fidelity metric,
    and for noise / blur its content decomposition's quantities on the ID and OOD splits."""
    if task.decomposition == "rain":
        return INDICATORS
    out = [(f"ID {task.removed}", "decomposition", ID_SPLIT, task.removal_metric, {}),
           (f"OOD {task.removed}", "decomposition", "ood", task.removal_metric, {}),
           (f"{task.fidelity_label} (ID)", "decomposition", ID_SPLIT, task.fidelity_metric, {})]
    for metric, label, _ in task.bars:
        out += [(f"{label} (ID)", "decomposition", ID_SPLIT, metric, {}),
                (f"{label} (OOD)", "decomposition", "ood", metric, {})]
    out += [(label.replace("rain", task.noun), probe, split, metric, extra)
            for label, probe, split, metric, extra in INDICATORS[3:]]
    return out


def _roles(metrics: pd.DataFrame) -> pd.Series:
    """model_id -> anchor name (``anchor`` column of probe.anchors' models, else the ``role``)."""
    if "role" not in metrics:
        return pd.Series(dtype=str)
    models = metrics.drop_duplicates("model_id").set_index("model_id")
    names = models["anchor"] if "anchor" in models else models["role"]
    return names[is_anchor(models)].astype(str)


def separates(a: float, b: float, rtol: float = 0.05) -> bool:
    """The rule of :func:`probe.anchors.separates` (kept import-free: the report reads stores only): one
    finite and one NaN, or both finite with |a − b| > rtol · max(|a|, |b|, 1e-3)."""
    fa, fb = bool(np.isfinite(a)), bool(np.isfinite(b))
    if fa != fb:
        return True
    return bool(fa and abs(a - b) > rtol * max(abs(a), abs(b), 1e-3))


def _values(metrics: pd.DataFrame, probe: str, split: str, metric: str, extra: dict) -> pd.DataFrame:
    m = metrics[(metrics["probe"] == probe) & (metrics["metric"] == metric)]
    splits = ood_split_names(metrics["split"]) if split == "ood" else [split]
    m = m[m["split"].isin(splits)]
    for key, value in extra.items():
        if key in m:
            m = m[m[key].astype(str) == value]
    return m.groupby(["model_id", "split"], as_index=False)["value"].mean()


def anchor_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows indicator × split (× background source of the evaluation set): every anchor's value, the trained
    models' range on the same evaluation set, and ``informative`` (identity vs oracle, :func:`separates`)."""
    roles = _roles(metrics)
    if roles.empty:
        return pd.DataFrame()
    trained = _trained(metrics)
    bg_of = metrics.drop_duplicates("model_id").set_index("model_id")["background"].astype(str) \
        if "background" in metrics else pd.Series("all", index=metrics["model_id"].unique())
    rows = []
    for label, probe, split, metric, extra in indicators(study_task(metrics)):
        values = _values(metrics, probe, split, metric, extra)
        values["background"] = values["model_id"].map(bg_of).fillna("all")
        for (sp, bg), part in values.groupby(["split", "background"]):
            v = part.set_index("model_id")["value"]
            row = {"indicator": label, "split": sp, "background": bg}
            for model, name in roles.items():
                if model in v.index:
                    row[name] = float(v[model])
            tv = v[v.index.isin(trained["model_id"])]
            row["trained min"], row["trained max"] = (float(tv.min()), float(tv.max())) if len(tv) else (np.nan,) * 2
            if "identity" in row or "oracle" in row:
                a, b = row.get("identity", np.nan), row.get("oracle", np.nan)
                row["informative"] = "?" if not ("identity" in row and "oracle" in row) else \
                    ("yes" if separates(a, b) else "NO")
                rows.append(row)
    return pd.DataFrame(rows)


def replication(metrics: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Text + per-cell counts of trained models (seeds)."""
    trained = _trained(metrics)
    models = trained.drop_duplicates("model_id")
    if models.empty:
        return "No trained grid models in this store (only networks measured on their own).", pd.DataFrame()
    cell_cols = [c for c in ("family", "background", "n_backgrounds") if c in models]
    if not cell_cols:
        return f"{len(models)} trained models.", pd.DataFrame()
    counts = models.groupby(cell_cols, dropna=False).size().rename("models (seeds)").reset_index()
    lo, hi = int(counts["models (seeds)"].min()), int(counts["models (seeds)"].max())
    text = (f"{len(models)} trained models in {len(counts)} cells, {lo}" + (f"–{hi}" if hi != lo else "")
            + " seed(s) per cell. ")
    if lo < 2:
        text += ("Some cells have one seed: their numbers carry no uncertainty over training seeds and the CIs "
                 "that need them are left empty. ")
    elif lo < 5:
        text += (f"With {lo} seeds per cell a bootstrap within cells understates the spread (its variance is "
                 f"≈ {(lo - 1) / lo:.2f} of the true one): read CIs as a lower bound on uncertainty and trust the "
                 "permutation p-values for yes/no questions. ")
    if "n_distinct_contents" in models:
        distinct = models.dropna(subset=["n_distinct_contents"])
        few = distinct[distinct["n_distinct_contents"] < distinct["n_backgrounds"]]
        for source, part in few.groupby("background"):
            ns = ", ".join(str(int(v)) for v in sorted(part["n_backgrounds"].unique()))
            text += (f"Background `{source}`: n_backgrounds = {ns} "
                     f"are crops of at most {int(part['n_distinct_contents'].max())} distinct photographs "
                     "(more n adds views, not contents). ")
    return text, counts
