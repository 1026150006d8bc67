"""External networks beside the grid, like for like: per background source, the same split names.

An external network measured beside a grid has one evaluation per source of the study (the same images,
splits, rain, patch and seed as that source's grid models); :func:`external_table` puts each of its rows
next to the grid's models with the fewest and the most training backgrounds *of that source* (per family).
Rows of folders of real pairs are compared with nothing (``source = "real pairs"``).
"""

from __future__ import annotations

import pandas as pd

from probe.analysis.sources import REAL, with_source

METRICS = [("decomposition", "removal_ratio"), ("decomposition", "mse_rain"), ("decomposition", "mse_bg"),
           ("decomposition", "psnr_bg_region"), ("generalization", "psnr"), ("generalization", "psnr_gain")]
KEYS = ["model", "kind", "source", "evaluation", "split"]


def _kinds(metrics: pd.DataFrame) -> pd.Series:
    from probe.records import kinds_of

    return kinds_of(metrics)


def _names(frame: pd.DataFrame) -> pd.Series:
    if "model_name" not in frame:
        return frame["model_id"].astype(str)
    return frame["model_name"].where(frame["model_name"].notna(), frame["model_id"]).astype(str)


def _wide(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    wanted = frame[[(p, m) in METRICS for p, m in zip(frame["probe"], frame["metric"])]]
    if wanted.empty:
        return pd.DataFrame()
    table = wanted.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").reset_index()
    order = [m for _, m in METRICS if m in table]
    return table[keys + order]


def external_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The external networks' rows (not failures), with ``name`` and ``source`` columns."""
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=["model_id", "name", "source"])
    ext = metrics[(_kinds(metrics) == "external").to_numpy() & (metrics["probe"] != "failed").to_numpy()]
    return with_source(ext).assign(name=_names(ext))


def external_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model × source × evaluation × split: each external network on each source, then the grid's
    references of that source (fewest / most ``n_backgrounds`` per family). Empty without external rows."""
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    frame = with_source(metrics[metrics["split"] != "clean"])
    frame = frame.assign(evaluation=["real pairs" if s == REAL else "synthetic" for s in frame["source"]])
    kinds = _kinds(frame).to_numpy()
    ext = frame[(kinds == "external") & (frame["probe"] != "failed").to_numpy()]
    if ext.empty:
        return pd.DataFrame()
    parts = [_wide(ext.assign(model=_names(ext), kind="external"), KEYS)]
    grid = frame[kinds == "grid"]
    if not grid.empty:
        grid = grid.assign(n=pd.to_numeric(grid["n_backgrounds"], errors="coerce"),
                           family_=grid["family"].astype(str) if "family" in grid else "grid")
        refs = []
        for (fam, source), part in grid.groupby(["family_", "source"]):
            if source not in set(ext["source"]):
                continue
            for label, n in (("fewest", part["n"].min()), ("most", part["n"].max())):
                refs.append(part[part["n"] == n].assign(model=f"{fam} (grid, n_backgrounds={int(n)})",
                                                        kind=f"grid: {label} backgrounds"))
        if refs:
            ref = pd.concat(refs, ignore_index=True).drop_duplicates(["model_id", "probe", "split", "metric", "kind"])
            ref = ref[ref["split"].isin(set(ext["split"]))]
            if not ref.empty:
                parts.append(_wide(ref, KEYS))
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(["source", "split", "kind", "model"], kind="stable").reset_index(drop=True).round(4)
