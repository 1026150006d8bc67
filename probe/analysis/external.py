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
           ("decomposition", "psnr_bg_region"), ("generalization", "psnr"), ("generalization", "psnr_gain"),
           ("generalization", "psnr_codebase"), ("generalization", "ssim_codebase")]
KEYS = ["model", "kind", "source", "evaluation", "split"]


def _kinds(metrics: pd.DataFrame) -> pd.Series:
    from probe.records import kinds_of

    return kinds_of(metrics)


def _names(frame: pd.DataFrame) -> pd.Series:
    if "model_name" not in frame:
        return frame["model_id"].astype(str)
    return frame["model_name"].where(frame["model_name"].notna(), frame["model_id"]).astype(str)


def _wide(frame: pd.DataFrame, keys: list[str], metrics: list[tuple[str, str]]) -> pd.DataFrame:
    wanted = frame[[(p, m) in metrics for p, m in zip(frame["probe"], frame["metric"])]]
    if wanted.empty:
        return pd.DataFrame()
    table = wanted.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").reset_index()
    table.columns.name = None  # else the HTML table gets a stray "metric" header cell
    order = [m for _, m in metrics if m in table]
    return table[keys + order]


def external_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The external networks' rows (not failures), with ``name`` and ``source`` columns."""
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=["model_id", "name", "source"])
    ext = metrics[(_kinds(metrics) == "external").to_numpy() & (metrics["probe"] != "failed").to_numpy()]
    return with_source(ext).assign(name=_names(ext))


def external_table(metrics: pd.DataFrame, columns: list[tuple[str, str]] | None = None,
                   by: list[str] | None = None) -> pd.DataFrame:
    """One row per model × source × evaluation × split (× ``by``, e.g. ``["window"]``): each external network on
    each source, then the grid's references of that source (fewest / most ``n_backgrounds`` per family).
    ``columns``: the (probe, metric) pairs shown (default :data:`METRICS`). Empty without external rows."""
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    columns = METRICS if columns is None else columns
    keys = KEYS + [k for k in by or [] if k in metrics]
    frame = with_source(metrics[metrics["split"] != "clean"])
    frame = frame.assign(evaluation=["real pairs" if s == REAL else "synthetic" for s in frame["source"]])
    kinds = _kinds(frame).to_numpy()
    ext = frame[(kinds == "external") & (frame["probe"] != "failed").to_numpy()]
    if ext.empty:
        return pd.DataFrame()
    parts = [_wide(ext.assign(model=_names(ext), kind="external"), keys, columns)]
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
            ref = pd.concat(refs, ignore_index=True).drop_duplicates(
                ["model_id", "probe", "split", "metric", "kind", *keys[len(KEYS):]])
            ref = ref[ref["split"].isin(set(ext["split"]))]
            if not ref.empty:
                parts.append(_wide(ref, keys, columns))
    table = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(not p.empty for p in parts) \
        else pd.DataFrame()
    if table.empty:
        return table
    table = table.sort_values(["source", "split", *keys[len(KEYS):], "kind", "model"], kind="stable")
    return table.reset_index(drop=True).round(4)


#: Model-info columns that say what probe chose or saw when it loaded an external network.
CHOICE_COLUMNS = [("output", "measured output (and why)"), ("deterministic", "deterministic"),
                  ("inplace", "changes its input in place"), ("conventions", "conventions"),
                  ("basicsr_metrics", "its code base's metrics (val.metrics)")]


def external_choices(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per external network: which of its outputs is measured and why, whether two forwards agreed and
    whether it changed its input in place (the loader's record, stored in the model's info). Empty when no
    external network has such a record."""
    rows = external_rows(metrics)
    cols = [c for c, _ in CHOICE_COLUMNS if c in rows]
    if rows.empty or not cols:
        return pd.DataFrame()
    table = rows.drop_duplicates("model_id")[["name", *cols]].rename(columns=dict(CHOICE_COLUMNS))
    return table.dropna(how="all", subset=[dict(CHOICE_COLUMNS)[c] for c in cols]).reset_index(drop=True)
