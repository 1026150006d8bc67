"""Study specs: one TOML file declares a grid of training runs and the test splits they share.

::

    [study]
    name = "derain_complexity"
    probes = ["generalization", "decomposition"]   # what `probe measure` runs by default

    [base]                      # the fixed training settings: a train config (see probe.train.config)
    seed = 0
    [base.model]
    family = "resnet"
    [base.eval.splits.ood]
    type = "rain"
    preset = "large"

    [axes]                      # any config key is an axis; short aliases below
    background = ["smooth", "natural"]
    n_backgrounds = [1, 4, 16, 64, 256]

    # or instead of (or after) the product, an explicit list of cells:
    # [[cells]]
    # background = "smooth"
    # n_backgrounds = 4

    # an axis that is not a config key names config overrides per value ("levels" of a factor):
    # [axes]
    # remedy = ["none", "prior"]
    # [levels.remedy.none]
    # [levels.remedy.prior]
    # "model.family" = "prior_restorer"
    # "model.prior" = "trained_models/priors/natural"

    # prerequisites the grid trains before its cells (a content prior, see probe.train.prior):
    # [priors.natural]
    # out = "trained_models/priors/natural"
    # background = "natural"

Python::

    from probe.grid.spec import StudySpec
    spec = StudySpec.from_toml("analyses/derain_complexity.toml")
    [cell.id for cell in spec.cells()]

:class:`StudySpec` validates what the grid owns (keys, axes, levels, priors, every cell's training config); the
probe names and ``[study.probe_params]`` are validated by :func:`probe.study.load_study`, which every entry
point (``probe grid run``, ``probe demo``) calls — the grid layer does not import the probe registry.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.grid.checks import cells_to_validate, check_cell_data, check_study_name
from probe.train.config import TrainConfig, load_toml, set_dotted

#: Short names for the axes people sweep most; any dotted config key works too.
AXIS_ALIASES = {
    "background": "data.background",
    "n_backgrounds": "data.n_backgrounds",
    "patch": "data.patch",
    "clean_fraction": "data.clean_fraction",
    "complexity": "data.background_options.complexity",
    "family": "model.family",
    "size": "model.size",
    "global_residual": "model.global_residual",
    "degradation": "degradation",
    "preset": "degradation.preset",
    "iterations": "train.iterations",
    "lr": "train.lr",
    "loss": "train.loss",
    "batch": "train.batch",
}
_STUDY_KEYS = {"name", "description", "probes", "probe_params"}
_TOP_KEYS = {"study", "base", "axes", "cells", "levels", "priors"}
_CONFIG_SECTIONS = {"name", "seed", "device", "model", "data", "degradation", "train", "eval", "axes"}


@dataclass(frozen=True)
class Cell:
    """One grid cell: its axis values (short names as written in the spec) and its stable id."""

    values: tuple[tuple[str, Any], ...]

    @property
    def axes(self) -> dict[str, Any]:
        return dict(self.values)

    @functools.cached_property
    def id(self) -> str:  # computed once per cell: planning stays linear in cells
        return cell_id(self.axes)


@dataclass
class StudySpec:
    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]] = field(default_factory=dict)
    explicit_cells: list[dict[str, Any]] = field(default_factory=list)
    probes: list[str] = field(default_factory=lambda: ["generalization", "decomposition"])
    probe_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    source: str = "spec"
    levels: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: str = "demo"  # the rung of the scale ladder this spec was resolved to (probe.grid.scale)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_toml(cls, path: str | Path, scale: str | None = None) -> StudySpec:
        """Load a spec file at rung ``scale`` of its ladder (default: the spec as written, ``demo``)."""
        path = Path(path)
        return cls.from_dict(load_toml(path), source=str(path), scale=scale)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "spec", scale: str | None = None) -> StudySpec:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a study spec must be a table, got {type(raw).__name__}")
        from probe.grid.scale import apply_scale

        raw = apply_scale(raw, scale, source)
        rung = raw.pop("_scale")
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r}; "
                              f"allowed: {', '.join(sorted(_TOP_KEYS))}")
        for key in ("study", "base", "axes"):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise ConfigError(f"{source}: [{key}] must be a table, got {raw[key]!r}")
        study = dict(raw.get("study") or {})
        bad = sorted(set(study) - _STUDY_KEYS)
        if bad:
            raise ConfigError(f"{source}: unknown key study.{bad[0]!r}; allowed: {', '.join(sorted(_STUDY_KEYS))}")
        name = check_study_name(study.get("name") or Path(source).stem, source)
        axes_raw = dict(raw.get("axes") or {})
        axes: dict[str, list[Any]] = {}
        for key, values in axes_raw.items():
            if isinstance(values, dict):  # a nested TOML table: [axes.model] family = [...]
                for sub, subvalues in _flatten(values, key).items():
                    axes[sub] = subvalues
            else:
                axes[key] = values
        for key, values in axes.items():
            if not isinstance(values, list):
                raise ConfigError(f"{source}: axis {key!r} must be a list of values, got {values!r}")
            if not values:
                raise ConfigError(f"{source}: axis {key!r} is empty")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise ConfigError(f"{source}: axis {key!r} repeats a value")
        cells = raw.get("cells") or []
        if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
            raise ConfigError(f"{source}: cells must be an array of tables ([[cells]])")
        probes = study.get("probes", ["generalization", "decomposition"])
        if not isinstance(probes, list) or not all(isinstance(p, str) for p in probes):
            raise ConfigError(f"{source}: study.probes must be a list of probe names")
        probe_params = study.get("probe_params") or {}
        if not isinstance(probe_params, dict) or not all(isinstance(v, dict) for v in probe_params.values()):
            raise ConfigError(f"{source}: study.probe_params must be a table of probe tables, e.g. "
                              f"[study.probe_params.cka], got {probe_params!r}")
        description = study.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{source}: study.description must be a string, got {description!r}")
        levels = raw.get("levels") or {}
        if not isinstance(levels, dict) or not all(
                isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()) for v in levels.values()):
            raise ConfigError(f"{source}: levels must be tables [levels.AXIS.VALUE] of config overrides")
        priors = raw.get("priors") or {}
        if not isinstance(priors, dict):
            raise ConfigError(f"{source}: priors must be tables [priors.NAME]")
        from probe.train.prior import check_prior_table

        priors = {str(k): check_prior_table(v, f"{source}: priors.{k}") for k, v in priors.items()}
        spec = cls(name=name, base=dict(raw.get("base") or {}), axes=axes,
                   explicit_cells=[dict(c) for c in cells], probes=probes,
                   probe_params=dict(probe_params), description=description, source=source,
                   levels={str(k): {str(a): dict(b) for a, b in v.items()} for k, v in levels.items()},
                   priors=priors, scale=rung)
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"study": {"name": self.name, "description": self.description,
                                         "probes": list(self.probes), "probe_params": self.probe_params},
                               "base": self.base, "axes": self.axes}
        if self.explicit_cells:
            out["cells"] = self.explicit_cells
        if self.levels:
            out["levels"] = self.levels
        if self.priors:
            out["priors"] = self.priors
        return out

    # ------------------------------------------------------------------ cells
    def cells(self) -> list[Cell]:
        """Every cell: the full product of ``axes`` then the explicit ``cells``, in a stable order."""
        out: list[Cell] = []
        if self.axes:
            keys = list(self.axes)
            for combo in itertools.product(*(self.axes[k] for k in keys)):
                out.append(Cell(tuple(zip(keys, combo))))
        for cell in self.explicit_cells:
            out.append(Cell(tuple(cell.items())))
        if not out:
            out.append(Cell(()))
        seen: dict[str, Cell] = {}
        for cell in out:
            if cell.id in seen:
                raise ConfigError(f"{self.source}: two cells share the id {cell.id!r}")
            seen[cell.id] = cell
        return out

    def config_for(self, cell: Cell) -> TrainConfig:
        raw = dict(self.base)  # TrainConfig.from_dict deep-copies; only the tables on a set path are copied here
        for key, value in cell.values:
            if key in self.levels:  # a named level: its config overrides
                if str(value) not in self.levels[key]:
                    raise ConfigError(f"{self.source}: axis {key!r} has value {value!r} but no "
                                      f"[levels.{key}.{value}] table; defined: {', '.join(self.levels[key])}")
                for dotted, override in self.levels[key][str(value)].items():
                    _set_copied(raw, resolve_axis(dotted), override)
                continue
            _set_copied(raw, resolve_axis(key), value)
        raw["name"] = f"{self.name}/{cell.id}"
        raw["axes"] = {k: v for k, v in cell.values}
        return TrainConfig.from_dict(raw, source=f"{self.source} [cell {cell.id}]")

    def validate(self) -> None:
        """Axis keys, levels and every cell's config (probe names and parameters: :func:`probe.study.load_study`)."""
        for key in list(self.axes) + [k for c in self.explicit_cells for k in c]:
            if key in self.levels:
                continue
            path = resolve_axis(key)
            head = path.split(".")[0]
            if head not in _CONFIG_SECTIONS:
                raise ConfigError(f"{self.source}: unknown axis key {key!r}; use a config key such as "
                                  f"data.n_backgrounds or one of: {', '.join(sorted(AXIS_ALIASES))}")
        for cell in cells_to_validate(self, self.cells()):  # one config per new (section, values): linear
            try:
                config = self.config_for(cell)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("unknown key", "unknown axis or base key")) from exc
            check_cell_data(config, f"{self.source} [cell {cell.id}]")


def resolve_axis(key: str) -> str:
    return AXIS_ALIASES.get(key, key)


def cell_id(axes: dict[str, Any]) -> str:
    """A stable, readable id from axis values, e.g. ``background-natural__n_backgrounds-16__seed-0``."""
    if not axes:
        return "default"
    parts = []
    for key, value in axes.items():
        if isinstance(value, (dict, list)):
            text = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
            label = value.get("preset") if isinstance(value, dict) and "preset" in value else None
            parts.append(_id_part(key, f"{label}-{text}" if label else text))
        else:
            parts.append(_id_part(key, f"{value:g}" if isinstance(value, float) else str(value)))
    return "__".join(parts)


@functools.lru_cache(maxsize=65536)
def _id_part(key: str, text: str) -> str:
    """``key-text`` of one axis value (cached: a grid repeats each value in many cells)."""
    return f"{key.split('.')[-1]}-{re.sub(r'[^A-Za-z0-9.+-]+', '_', text)}"


def _set_copied(raw: dict[str, Any], key: str, value: Any) -> None:
    """:func:`set_dotted` on ``raw`` after copying each table along ``key``, so the spec's own tables are never
    changed (cheaper than deep-copying the whole base for each of many cells)."""
    node = raw
    for part in key.split(".")[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            break  # set_dotted creates the table, or names the key that is not one
        node[part] = child = dict(child)
        node = child
    set_dotted(raw, key, value)


def _flatten(table: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = value
    return out
