"""``RunRecord``: a training run's ``run.json``, read and written in one place.

Fields (all optional in a file; a missing one takes the default shown): ``schema`` (0 for files written before
records had versions), ``status`` (``"pending"``), ``name``, ``config`` (the full resolved training config),
``axes`` (grid axis values), ``model`` (``{"family", "size", "kwargs"}``; else ``config["model"]``),
``seed`` (else ``config["seed"]``, else 0), ``weights_sha256`` (``""``), ``metrics``, ``history``,
``wall_time_s``, ``error``, ``provenance``, ``owner``, and from schema 1 ``eval`` (the resolved
:class:`~probe.records.evalspec.EvalSpec`), ``stream`` (the data stream's description) and ``task`` (the
degradation's decomposition: rain | noise | blur). Unknown keys are kept and written back unchanged::

    from probe.records import RunRecord
    record = RunRecord.load("trained_models/derain_complexity/n_backgrounds-4")   # dir or run.json
    record.eval_spec.patch, record.task, record.done
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.records.base import RecordError, check_schema, read_json, table
from probe.records.evalspec import DEFAULT_PATCH, EvalSpec

RUN_FILE = "run.json"
#: the newest ``run.json`` schema this probe reads and writes
RUN_SCHEMA = 1
_KNOWN = ("schema", "status", "config", "axes", "model", "seed", "weights_sha256", "metrics", "history", "eval",
          "task")


@dataclass
class RunRecord:
    """One run's record (see the module docstring); ``extra`` holds every other key of the file."""

    config: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    axes: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    weights_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[Any] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = RUN_SCHEMA
    path: Path | None = None

    # ------------------------------------------------------------------------------------------ reading

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "run record") -> RunRecord:
        """A record from a ``run.json`` object; :class:`RecordError` naming the key for a bad field."""
        raw = dict(raw)
        schema = check_schema(raw, RUN_SCHEMA, where, "run.json")
        config = table(raw, "config", where, "run.json")
        model = table(raw, "model", where, "run.json") or dict(config.get("model") or {})
        seed = raw.get("seed", config.get("seed", 0))
        try:
            seed = int(seed or 0)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: run.json key 'seed' must be an int, got {seed!r}") from exc
        history = raw.get("history")
        history = [] if history is None else history
        if not isinstance(history, list):
            raise RecordError(f"{where}: run.json key 'history' must be a list, got {type(history).__name__}")
        task = raw.get("task")
        return cls(config=config, status=str(raw.get("status") or "pending"),
                   axes=table(raw, "axes", where, "run.json"), model=model, seed=seed,
                   weights_sha256=str(raw.get("weights_sha256") or ""),
                   metrics=table(raw, "metrics", where, "run.json"), history=history,
                   eval=table(raw, "eval", where, "run.json"), task=str(task) if task else None,
                   extra={k: v for k, v in raw.items() if k not in _KNOWN}, schema=schema)

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read ``path`` (a run directory or its ``run.json``); :class:`RecordError` naming the file."""
        path = Path(path)
        file = path / RUN_FILE if path.is_dir() or path.name != RUN_FILE else path
        record = cls.from_dict(read_json(file, RUN_FILE, " (not a run directory)"), where=str(file))
        record.path = file.parent
        return record

    # ------------------------------------------------------------------------------------------ writing

    def to_dict(self) -> dict[str, Any]:
        """The ``run.json`` object (the ``schema`` key first, unknown keys kept)."""
        out: dict[str, Any] = {"schema": RUN_SCHEMA, "status": self.status, **self.extra, "config": self.config,
                               "axes": self.axes, "model": self.model, "seed": self.seed,
                               "history": self.history}
        if not self.eval and self.config:  # the resolved evaluation set, written once with the record
            out["eval"] = self.eval_spec.to_dict()
        for key in ("weights_sha256", "metrics", "eval", "task"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def dump(self, path: str | Path | None = None) -> Path:
        """Write atomically to ``path`` (a run directory or file; default: where it was loaded from)."""
        from probe.fsutil import write_json_atomic

        target = Path(path) if path is not None else self.path
        if target is None:
            raise RecordError("run record: no path to write to")
        file = target if target.suffix == ".json" else target / RUN_FILE
        write_json_atomic(file, self.to_dict())
        return file

    # ------------------------------------------------------------------------------------- derived views

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def data(self) -> dict[str, Any]:
        """The ``[data]`` table of the config."""
        return dict(self.config.get("data") or {})

    @property
    def background(self) -> str | None:
        return self.data.get("background")

    @property
    def background_options(self) -> dict[str, Any]:
        return dict(self.data.get("background_options") or {})

    @property
    def n_backgrounds(self) -> int:
        return int(self.data.get("n_backgrounds") or 1)

    @property
    def patch(self) -> int:
        """The training patch (px)."""
        return int(self.data.get("patch") or DEFAULT_PATCH)

    @property
    def family(self) -> str | None:
        return self.model.get("family")

    @property
    def eval_spec(self) -> EvalSpec:
        """The resolved evaluation set: the stored ``eval`` (schema ≥ 1), else resolved from the config."""
        return EvalSpec.from_dict(self.eval) if self.eval else EvalSpec.from_config(self.config)

    def complexity_key(self) -> tuple[str, str, int, int, int]:
        """Hashable (background, options JSON, n_backgrounds, patch, seed) of the training backgrounds."""
        return (str(self.background), json.dumps(self.background_options, sort_keys=True), self.n_backgrounds,
                self.patch, self.seed)
