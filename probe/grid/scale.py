"""The scale ladder: one study spec, several *rungs* (``[scale.NAME]`` tables), chosen by the user.

A rung is the same study at another scale — more iterations, seeds or values of n, a GPU, the papers' patch
size — written as overrides of the spec it sits in, so every rung shares one base and cannot drift from it::

    [base.train]
    iterations = 300            # the spec as written is the `demo` rung

    [scale.demo]
    description = "CPU, <= 10 min on 2 cores"

    [scale.long]
    description = "CPU, <= 90 min on 2 cores"
    [scale.long.base.train]     # deep-merged into [base]: tables merge, values and lists replace
    iterations = 3000
    [scale.long.axes]           # replaces these axes (the other axes stay)
    seed = [0, 1, 2, 3, 4]

A rung table may hold ``description``, ``study`` (merged into ``[study]``), ``base`` (deep-merged into
``[base]``), ``axes`` (axis by axis) and ``cells`` / ``levels`` / ``priors`` (replacing the spec's). The
conventional rungs are :data:`LADDER` (``demo`` CPU ≤ 10 min, ``long`` CPU ≤ 90 min on 2 cores, ``gpu`` one GPU
≤ 10 min with the batched executor, ``paper`` about a GPU-day); other names (``pilot``) are allowed.

The rung a run used is never silent: every rung except ``demo`` appends ``_<rung>`` to the study name (unless the
rung sets ``study.name``), so its models, store and report live in their own folders and every run record
names it; :attr:`probe.grid.spec.StudySpec.scale` holds it. Choose it with ``probe demo --spec X --scale long``
or ``probe grid run SPEC --scale long``; ``--dry-run`` prints every rung's expected CPU and GPU time
(:func:`probe.grid.estimate.estimate_rungs`).

Python::

    from probe.grid.scale import apply_scale, rung_names
    raw = probe.train.config.load_toml("analyses/derain_ntrend.toml")
    rung_names(raw)                          # ['demo', 'pilot', 'long', ...]
    resolved = apply_scale(raw, "long")      # a plain spec table without [scale], ready for StudySpec

Errors: :class:`probe.errors.ConfigError` naming the file and the key — an unknown rung (listing the defined
ones), a rung table that is not a table, an unknown key in a rung.
"""

from __future__ import annotations

import copy
from typing import Any

from probe.errors import ConfigError

#: the conventional rungs, smallest first (a spec may define any subset, and other names)
LADDER = ("demo", "long", "gpu", "paper")
#: the rung the spec as written is; chosen when the user asks for none
DEFAULT_RUNG = "demo"
_RUNG_KEYS = {"description", "study", "base", "axes", "cells", "levels", "priors"}


def rung_tables(raw: dict[str, Any], source: str = "spec") -> dict[str, dict[str, Any]]:
    """The validated ``[scale.NAME]`` tables of a spec table (``{}`` when it has none)."""
    table = raw.get("scale")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [scale] must be tables [scale.RUNG], got {table!r}")
    for name, rung in table.items():
        if not isinstance(rung, dict):
            raise ConfigError(f"{source}: scale.{name} must be a table of overrides, got {rung!r}")
        bad = sorted(set(rung) - _RUNG_KEYS)
        if bad:
            raise ConfigError(f"{source}: unknown key scale.{name}.{bad[0]}; allowed: {', '.join(sorted(_RUNG_KEYS))}")
        for key in ("study", "base", "axes", "levels", "priors"):
            if key in rung and not isinstance(rung[key], dict):
                raise ConfigError(f"{source}: scale.{name}.{key} must be a table, got {rung[key]!r}")
        if "description" in rung and not isinstance(rung["description"], str):
            raise ConfigError(f"{source}: scale.{name}.description must be a string, got {rung['description']!r}")
    return table


def rung_names(raw: dict[str, Any], source: str = "spec") -> list[str]:
    """The rungs a spec offers: the ladder's first (in :data:`LADDER` order), then others as written; a spec
    without ``[scale]`` offers only :data:`DEFAULT_RUNG` (itself)."""
    names = list(rung_tables(raw, source)) or [DEFAULT_RUNG]
    if DEFAULT_RUNG not in names:
        names.insert(0, DEFAULT_RUNG)
    return sorted(names, key=lambda n: (LADDER.index(n) if n in LADDER else len(LADDER), names.index(n)))


def apply_scale(raw: dict[str, Any], scale: str | None = None, source: str = "spec") -> dict[str, Any]:
    """The spec table with rung ``scale`` (default :data:`DEFAULT_RUNG`) applied and ``[scale]`` removed.

    ``raw`` is not modified. The result carries the rung's name under the private key ``"_scale"`` (read by
    :class:`probe.grid.spec.StudySpec`). Raises ConfigError for an unknown rung, naming the defined ones.
    """
    tables = rung_tables(raw, source)
    name = DEFAULT_RUNG if scale is None else scale
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: --scale must be a rung name, got {scale!r}")
    out = {k: copy.deepcopy(v) for k, v in raw.items() if k != "scale"}
    if name not in tables:
        if name == DEFAULT_RUNG:  # the spec as written
            out["_scale"] = name
            return out
        offered = ", ".join(rung_names(raw, source))
        raise ConfigError(f"{source}: no rung {name!r} (--scale); this spec defines: {offered}"
                          + ("" if tables else " — add [scale.NAME] tables to give it a ladder (docs/scale.md)"))
    rung = tables[name]
    study = dict(out.get("study") or {})
    base_name = study.get("name")
    study.update(copy.deepcopy(rung.get("study") or {}))
    if name != DEFAULT_RUNG and "name" not in (rung.get("study") or {}):
        from pathlib import Path

        study["name"] = f"{base_name or Path(source).stem}_{name}"
    if "description" in rung and "description" not in (rung.get("study") or {}):
        study["description"] = (f"{study['description']} — " if study.get("description") else "") + \
            f"rung {name}: {rung['description']}"
    out["study"] = study
    if "base" in rung:
        out["base"] = deep_merge(out.get("base") or {}, rung["base"])
    if "axes" in rung:
        axes = dict(out.get("axes") or {})
        axes.update(copy.deepcopy(rung["axes"]))
        out["axes"] = axes
    for key in ("cells", "levels", "priors"):
        if key in rung:
            out[key] = copy.deepcopy(rung[key])
    out["_scale"] = name
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``: nested tables merge key by key; values and lists replace. Neither input is
    modified."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
