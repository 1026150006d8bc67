"""Your networks beside the grid (a table of the headline section): decoupled metrics per split of every
model without grid axes (external networks measured from a checkpoint or model card), next to the grid's
models with the fewest and the most training backgrounds of each family on the same split names.

Rows say which evaluation the numbers come from (``synthetic`` splits, shared with the grid, or ``real
pairs`` from folders): only rows of the same evaluation are directly comparable.
"""

from __future__ import annotations

import pandas as pd

from probe.report.context import display_names, evaluation_kind, with_axes, without_axes

METRICS = [("decomposition", "removal_ratio"), ("decomposition", "mse_rain"), ("decomposition", "mse_bg"),
           ("decomposition", "psnr_bg_region"), ("generalization", "psnr"), ("generalization", "psnr_gain")]


def _wide(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    wanted = frame[[(p, m) in METRICS for p, m in zip(frame["probe"], frame["metric"])]]
    if wanted.empty:
        return pd.DataFrame()
    table = wanted.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").reset_index()
    order = [m for _, m in METRICS if m in table]
    return table[keys + order]


def external_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model (external ones, then grid references) × evaluation × split; NaN-free keys."""
    if metrics.empty:
        return pd.DataFrame()
    frame = metrics[metrics["split"] != "clean"].copy()
    frame["evaluation"] = [evaluation_kind(e) for e in frame["eval"]]
    ext_mask = without_axes(frame) & (frame["probe"] != "failed")
    ext = frame[ext_mask].assign(model=display_names(frame[ext_mask]), kind="external")
    if ext.empty:
        return pd.DataFrame()
    ext_table = _wide(ext, ["model", "kind", "evaluation", "split"])
    grid = frame[with_axes(frame)]
    parts = [ext_table]
    if not grid.empty:
        grid = grid.assign(n=pd.to_numeric(grid["n_backgrounds"], errors="coerce"))
        family = grid["family"].astype(str) if "family" in grid else pd.Series("grid", index=grid.index)
        grid = grid.assign(family_=family)
        refs = []
        for fam, part in grid.groupby("family_"):
            for label, n in (("fewest", part["n"].min()), ("most", part["n"].max())):
                pick = part[part["n"] == n].assign(model=f"{fam} (grid, n_backgrounds={int(n)})",
                                                   kind=f"grid: {label} backgrounds")
                refs.append(pick)
        ref = pd.concat(refs, ignore_index=True).drop_duplicates(["model_id", "probe", "split", "metric"])
        ref = ref[ref["split"].isin(set(ext["split"]))]
        if not ref.empty:
            parts.append(_wide(ref, ["model", "kind", "evaluation", "split"]))
    return pd.concat(parts, ignore_index=True).round(4)
