"""The representation section's data: store entries per probe (one parameter setting), the model table and the
models picked for figures. Used by :mod:`probe.report.sections.representation` only."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from probe.report.context import ID_SPLIT, NON_DEGRADED, POOLED_SPLITS, STUDY_MODEL_IDS, ReportContext

PROBES = ("activations", "cka", "ddr")
STUDY_PROBE = "cka_models"
MAX_GROUPS = 4           # (family, background source) panels per figure
OUTPUT_LAYERS = ("hook_output", "hook_layer")  # image-space probe points, not features
_INFO = ("family", "background", "n_backgrounds", "seed", "model_name")


class RepresentationData:
    """The store's entries and model table, shared by the figure builders."""

    def __init__(self, ctx: ReportContext):
        from probe.store import list_entries

        self.ctx = ctx
        entries = list_entries(ctx.store)
        self.study = _study_entries(ctx, entries)
        entries = entries[~entries["model_id"].isin(STUDY_MODEL_IDS)]
        self.chosen = {probe: _one_setting(entries[entries["probe"] == probe]) for probe in PROBES}
        ids = sorted({mid for frame in self.chosen.values() for mid in frame["model_id"]}
                     | {mid for _, row in self.study.iterrows() for mid in _study_models(row)})
        self.models = _model_table(ctx, ids)

    def has_any(self) -> bool:
        return any(not f.empty for f in self.chosen.values()) or not self.study.empty

    def metrics(self, probe: str) -> pd.DataFrame:
        """The probe's metric rows of the chosen setting, with the model table's ``group`` column, the
        evaluation's ``source``, ``external`` (bool) and ``rel_depth`` (a probe point's depth over the model's
        deepest, 0–1, so networks with different layers share an axis). An external network's rows take the
        group of the grid's models measured on the same source (like for like)."""
        from probe.analysis.sources import with_source

        chosen = self.chosen[probe]
        frame = self.ctx.probe_metrics(probe)
        if frame.empty or chosen.empty:
            return frame.iloc[0:0]
        keys = set(zip(chosen["model_id"], chosen["params"], chosen["eval"]))
        mask = [k in keys for k in zip(frame["model_id"], frame["params"], frame["eval"])]
        frame = frame[np.asarray(mask, dtype=bool)]
        frame = frame.drop(columns=[c for c in _INFO if c in frame])
        frame = with_source(frame.merge(self.models, on="model_id", how="inner"))
        external = frame["n_backgrounds"].isna().to_numpy()
        grid = self.models[self.models["n_backgrounds"].notna()]
        group_of = dict(zip(grid["background"], grid["group"]))
        frame = frame.assign(external=external, group=[group_of.get(src, src) if ext else g for ext, src, g in
                                                       zip(external, frame["source"], frame["group"])])
        if "depth" in frame:
            deepest = frame.groupby(["model_id", "eval"])["depth"].transform("max").replace(0, np.nan)
            frame["rel_depth"] = (pd.to_numeric(frame["depth"], errors="coerce") / deepest).fillna(0.0)
        return frame

    def array(self, probe: str, model_id: str, name: str) -> Any:
        from probe.store import read_array

        row = self.chosen[probe][self.chosen[probe]["model_id"] == model_id].iloc[0]
        return read_array(self.ctx.store, model_id, probe, name, params=row["params"],
                          eval_info=json.loads(row["eval"]))

    def groups(self, probe: str | None = None, cap: int = MAX_GROUPS) -> list[str]:
        """The grid's groups (family · source) with results of ``probe``: the panels of a figure (an external
        network is drawn in the panel of each source it was measured on, never in a panel of its own)."""
        models = self.models[self.models["n_backgrounds"].notna()]
        if probe is not None:
            models = models[models["model_id"].isin(self.chosen[probe]["model_id"])]
        if models.empty and probe is not None:  # only networks of your own: one panel per source they saw
            from probe.analysis.sources import eval_source

            return list(dict.fromkeys(eval_source(e) for e in self.chosen[probe]["eval"]))[:cap]
        return list(dict.fromkeys(models["group"]))[:cap]

    def picks(self, probe: str, cap: int = MAX_GROUPS) -> list[tuple[str, list[pd.Series]]]:
        """Per group (≤ cap): the model with the fewest and the one with the most training backgrounds
        (lowest seed each; one model when the group has a single ``n_backgrounds``)."""
        models = self.models[self.models["model_id"].isin(self.chosen[probe]["model_id"])
                             & self.models["n_backgrounds"].notna()]
        out = []
        for group in self.groups(probe, cap):
            part = models[models["group"] == group].sort_values(["n_backgrounds", "seed", "model_id"])
            if part.empty:
                continue
            first = part.iloc[0]
            most = part[part["n_backgrounds"] == part["n_backgrounds"].max()]
            last = most.iloc[0] if len(most) else part.iloc[-1]
            out.append((group, [first] if last["model_id"] == first["model_id"] else [first, last]))
        return out

    def main_split(self, available: list[str]) -> str:
        """The first OOD split among ``available``, else the ID split, else the first one."""
        available = [str(s) for s in available]
        ood = [s for s in available if s not in NON_DEGRADED | POOLED_SPLITS | {ID_SPLIT}]
        preferred = [s for s in self.ctx.ood_splits() if s in ood] or sorted(ood)
        if preferred:
            return preferred[0]
        return ID_SPLIT if ID_SPLIT in available else available[0]


def _one_setting(entries: pd.DataFrame) -> pd.DataFrame:
    """One entry per model and evaluation set (an external network has one per source): the parameter setting
    most models have; the latest entry if several remain."""
    if entries.empty:
        return entries
    counts = entries.drop_duplicates(["model_id", "params"])["params"].value_counts()
    entries = entries[entries["params"] == counts.index[0]]
    return entries.sort_values("time").drop_duplicates(["model_id", "eval"], keep="last").reset_index(drop=True)


def _study_entries(ctx: ReportContext, entries: pd.DataFrame) -> pd.DataFrame:
    """The model × model CKA entries, with a ``store`` column: from the study store beside ``results.h5``
    (:func:`probe.records.study_store_path`), else — stores written before it existed — the legacy
    pseudo model of ``results.h5``."""
    from probe.records import study_store_path
    from probe.store import list_entries

    path = study_store_path(ctx.store)
    study = list_entries(path) if path.is_file() else entries.iloc[0:0]
    if len(study):
        study = study[study["probe"] == STUDY_PROBE].assign(store=str(path))
    if not len(study):
        study = entries[entries["model_id"].isin(STUDY_MODEL_IDS) & (entries["probe"] == STUDY_PROBE)]
        study = study.assign(store=str(ctx.store))
    return study


def _study_models(row: pd.Series) -> list[str]:
    try:
        return list(json.loads(row["params"]).get("models") or {})
    except (ValueError, AttributeError):
        return []


def _model_table(ctx: ReportContext, ids: list[str]) -> pd.DataFrame:
    """model_id, family, background, n_backgrounds, seed, label, group — sorted for display."""
    metrics = ctx.metrics
    rows: dict[str, dict[str, Any]] = {}
    if len(metrics):
        cols = [c for c in _INFO if c in metrics]
        for rec in metrics.drop_duplicates("model_id")[["model_id", *cols]].to_dict("records"):
            rows[str(rec["model_id"])] = rec
    missing = [mid for mid in ids if mid not in rows]
    if missing:
        from probe.store import read_model_info

        for mid in missing:
            try:
                info = read_model_info(ctx.store, mid)
            except Exception:
                info = {}
            rows[mid] = {"model_id": mid, **{k: info.get(k) for k in _INFO}}
    table = pd.DataFrame([{"model_id": mid, **{k: rows[mid].get(k) for k in _INFO}} for mid in ids],
                         columns=["model_id", *_INFO])
    table["family"] = table["family"].fillna("model").astype(str)
    table["background"] = table["background"].fillna("").astype(str)
    table["n_backgrounds"] = pd.to_numeric(table["n_backgrounds"], errors="coerce")
    table["seed"] = pd.to_numeric(table["seed"], errors="coerce").fillna(0).astype(int)
    several = table.loc[table["n_backgrounds"].notna(), "family"].nunique() > 1  # the grid's families
    table["group"] = [(f"{f} · {b}" if several else b) or f for f, b in zip(table["family"], table["background"])]
    table["name"] = table["model_name"].where(table["model_name"].notna(), table["model_id"]).astype(str)
    table["label"] = [f"yours: {name}" if np.isnan(n) else f"{g} n={int(n)} s{s}"
                      for g, n, s, name in zip(table["group"], table["n_backgrounds"], table["seed"], table["name"])]
    return table.sort_values(["family", "background", "n_backgrounds", "seed", "model_id"]).reset_index(drop=True)


def title(row: pd.Series) -> str:
    n = row["n_backgrounds"]
    return f"{row['group']} · n={'?' if np.isnan(n) else int(n)} (seed {int(row['seed'])})"


def feature_layer(layers: list[str]) -> str:
    """The deepest probe point that is a feature map (not the predicted layer / output image)."""
    features = [name for name in layers if str(name) not in OUTPUT_LAYERS]
    return str((features or layers)[-1])


def deep_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, the rows of its deepest feature layer (rows need ``layer`` and ``depth``)."""
    parts = []
    for _, part in frame.dropna(subset=["depth"]).groupby(["model_id", "eval"] if "eval" in frame else "model_id"):
        layers = list(part.sort_values("depth").drop_duplicates("layer")["layer"])
        parts.append(part[part["layer"] == feature_layer(layers)])
    return pd.concat(parts, ignore_index=True) if parts else frame.iloc[0:0]
