"""``StudyRecord``: a grid's ``study.json`` (name, source, the study spec, the cells), read in one place.

Fields: ``schema`` (0 when absent), ``name``, ``source`` (the spec file), ``spec`` (``StudySpec.to_dict()``),
``cells`` (``[{"id", "axes"}]``), from schema 1 ``task`` (the degradation's decomposition) and
``shortcut_rule`` (the rule version the shortcut score used). ``probes`` / ``probe_params`` are views of
``spec["study"]``::

    from probe.records import StudyRecord, find_study
    study = find_study("trained_models/derain_complexity/n_backgrounds-4")   # walks up to 3 parents
    study.name, study.probes, study.probe_params.get("cka", {})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.records.base import check_schema, read_json, table

STUDY_FILE = "study.json"
#: the newest ``study.json`` schema this probe reads and writes
STUDY_SCHEMA = 1
_KNOWN = ("schema", "name", "source", "spec", "cells", "task")


@dataclass
class StudyRecord:
    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    cells: list[dict[str, Any]] = field(default_factory=list)
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = STUDY_SCHEMA
    path: Path | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "study record", default_name: str = "study"
                  ) -> StudyRecord:
        raw = dict(raw)
        schema = check_schema(raw, STUDY_SCHEMA, where, "study.json")
        cells = raw.get("cells") or []
        return cls(name=str(raw.get("name") or default_name), spec=table(raw, "spec", where, "study.json"),
                   source=str(raw.get("source") or ""), cells=list(cells) if isinstance(cells, list) else [],
                   task=str(raw["task"]) if raw.get("task") else None,
                   extra={k: v for k, v in raw.items() if k not in _KNOWN}, schema=schema)

    @classmethod
    def load(cls, path: str | Path) -> StudyRecord:
        """Read ``path`` (a folder holding ``study.json``, or the file); :class:`RecordError` naming it."""
        path = Path(path)
        file = path / STUDY_FILE if path.is_dir() else path
        record = cls.from_dict(read_json(file, STUDY_FILE, " (not a grid output directory)"), where=str(file),
                               default_name=file.parent.name)
        record.path = file
        return record

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": STUDY_SCHEMA, "name": self.name, "source": self.source,
                               "spec": self.spec, "cells": self.cells, **self.extra}
        if self.task:
            out["task"] = self.task
        return out

    def dump(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (a folder or the file)."""
        from probe.fsutil import write_json_atomic

        path = Path(path)
        file = path if path.suffix == ".json" else path / STUDY_FILE
        write_json_atomic(file, self.to_dict())
        return file

    @property
    def study_table(self) -> dict[str, Any]:
        return dict((self.spec or {}).get("study") or {})

    @property
    def probes(self) -> list[str] | None:
        names = self.study_table.get("probes")
        return list(names) if names else None

    @property
    def probe_params(self) -> dict[str, dict[str, Any]]:
        return {str(k): dict(v or {}) for k, v in (self.study_table.get("probe_params") or {}).items()}


def find_study(path: str | Path, levels: int = 4) -> StudyRecord | None:
    """The study a run (or grid) directory belongs to: the first ``study.json`` in ``path`` or its parents
    (``levels`` folders in all), or None."""
    path = Path(path)
    for folder in [path, *path.resolve().parents][:levels]:
        if (folder / STUDY_FILE).is_file():
            return StudyRecord.load(folder)
    return None
