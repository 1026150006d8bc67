"""Plan, then run: what one ``probe measure`` call will do, computed before anything is measured.

A :class:`Plan` is entries × probes: the **entries** (:class:`probe.probes.study.StudyEntry`: a grid's
finished runs, an external network, the calibration anchors — each with the evaluation sets it is measured on)
and the **probes**: per-model probes (run on every entry and evaluation set) and study probes
(:class:`probe.probes.study.StudyProbe` registry entries: asked for by name, or brought along by a per-model
probe they declare in ``implied_by``). :func:`probe.measure.runner.run_plan` executes it with one failure policy.

Like for like: an external network is measured on exactly the evaluation sets of the study's grid — one per
distinct evaluation set of its runs (every background source, with its splits, rain, image count, patch and
seed) — so each source's grid models are compared with the network on their own images
(:func:`study_eval_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import DataError

DEFAULT_PROBES = ["generalization", "decomposition"]


@dataclass
class Plan:
    """``study`` (name), ``entries``, per-model ``probes``, ``study_probes``, ``configs`` (the study's run
    configs: what the study probes' extra runs are built from), ``probe_params`` (the study's)."""

    study: str
    entries: list[Any] = field(default_factory=list)
    probes: list[Any] = field(default_factory=list)
    study_probes: list[Any] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)
    probe_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per (entry, evaluation set, per-model probe), then one per study probe."""
        out = [{"model": e.model_id, "kind": e.kind, "probe": p.name,
                "eval": (d.info or {}).get("background") or (d.info or {}).get("source", "?")}
               for e in self.entries for d in e.evals for p in self.probes]
        return out + [{"model": self.study, "kind": "study", "probe": p.name, "eval": ""} for p in self.study_probes]

    def size(self) -> int:
        return sum(len(e.evals) * len(self.probes) for e in self.entries)


def make_probes(names: list[str], params: dict[str, Any]) -> list[Any]:
    from probe.probes import PROBES

    return [PROBES.get(name)(**params.get(name, {})) for name in names]


def split_probes(names: list[str], params: dict[str, Any], kinds: set[str]) -> tuple[list[Any], list[Any]]:
    """(per-model probes, study probes) for ``names``: a study probe named, or implied by a named per-model
    probe (``implied_by``), is planned when it reads one of the entry ``kinds``."""
    from probe.probes import PROBES

    objs = make_probes(names, params)
    per_model = [p for p in objs if not getattr(p, "study_level", False)]
    study = [p for p in objs if getattr(p, "study_level", False)]
    asked = {p.name for p in study}
    for name in PROBES.names():
        cls = PROBES.get(name)
        implied = set(getattr(cls, "implied_by", ())) & set(names)
        if getattr(cls, "study_level", False) and name not in asked and implied:
            study.append(cls(**params.get(name, {})))
    return per_model, [p for p in study if set(getattr(p, "kinds", ("grid",))) & kinds]


def grid_entries(path: Path, root: Path, splits: list[str] | None, device: str) -> list[Any]:
    """One entry per finished run under ``path`` (its own evaluation set)."""
    from probe.measure.info import grid_info
    from probe.models.checkpoint import load_model
    from probe.probes.evaldata import eval_data_for_run
    from probe.probes.study import StudyEntry
    from probe.train.catalog import catalog_row, find_runs
    from probe.train.rundir import RunDir

    runs = [RunDir(p) for p in find_runs(path)]
    finished = [r for r in runs if r.status() == "done"]
    if not finished:
        raise DataError(f"{path}: no finished runs to measure ({len(runs)} run directories found)")
    entries = []
    for run in finished:
        record = run.record()
        row = catalog_row(run, root)
        entries.append(StudyEntry(model_id=row["run_id"], kind="grid", info=grid_info(row, record),
                                  load=lambda p=run.path: load_model(p, device=device),
                                  sha256=record.weights_sha256, record=record,
                                  evals=[eval_data_for_run(record).select(splits)], path=run.path))
    entries[0].info["_unfinished"] = len(runs) - len(finished)
    return entries


def study_eval_sets(configs: list[dict[str, Any]], splits: list[str] | None) -> list[Any]:
    """The distinct evaluation sets of a study's run configs, in first-seen order (one per background source
    and option set): what each group of grid models was measured on."""
    from probe.probes.evaldata import cached_eval_data, eval_info

    seen: dict[str, Any] = {}
    for config in configs:
        info = eval_info(config)
        import json

        key = json.dumps(info, sort_keys=True)
        if key not in seen:
            seen[key] = cached_eval_data(info).select(splits)
    return list(seen.values())


def study_configs(out: Path) -> tuple[Any, list[dict[str, Any]]]:
    """(StudyRecord or None, every cell's training config) of the study beside the store ``out``; without a
    ``study.json`` there, the bundled default study's."""
    from probe.grid.spec import StudySpec
    from probe.records import StudyRecord
    from probe.study import bundled_spec

    record = StudyRecord.load(out.parent) if (out.parent / "study.json").is_file() else None
    if record is not None and record.spec:
        spec = StudySpec.from_dict(record.spec, source=str(record.path))
    else:
        spec = StudySpec.from_toml(bundled_spec())
    return record, [spec.config_for(cell).to_dict() for cell in spec.cells()]


def anchor_entries(names: list[str], grid: list[Any], store_dir: Path, device: str) -> list[Any]:
    """Calibration anchors (:mod:`probe.anchors`) as entries: each anchor once per distinct evaluation set of
    the grid's entries."""
    from probe.anchors import anchor_info, build_anchor, eval_key
    from probe.probes.study import StudyEntry

    out, seen = [], set()
    for entry in grid:
        data = entry.evals[0]
        key = eval_key(data.info)
        if key in seen:
            continue
        seen.add(key)
        for name in names:
            out.append(StudyEntry(model_id=f"anchor-{name}-{key}", kind="anchor",
                                  info=anchor_info(name, entry.record, data.info, key, entry.model_id),
                                  load=lambda n=name, r=entry.record, k=key: build_anchor(n, r, store_dir, k, device),
                                  record=None, evals=[data]))
    return out
