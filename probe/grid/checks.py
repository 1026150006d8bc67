"""Plan checks beyond one training config's own keys: what every cell of a study will build, and the study's name.

:meth:`probe.grid.spec.StudySpec.validate` runs these on every cell, so ``probe grid run --dry-run`` refuses in
one line (exit 2) what would otherwise fail in every cell after the grid has started:

* :func:`check_cell_data` — the training and evaluation background sources with their options (unknown or
  mistyped options, the ``complexity`` alias on a source without that option, a ``folder`` root that does not
  exist or holds no images), via each source's declared parameters
  (:func:`probe.data.backgrounds.base.check_background`, cached per distinct source: linear in cells).
* :func:`check_study_name` — a study name is one safe path component (it names ``trained_models/<study>``).

Degradation and model options are already checked by :meth:`probe.train.config.TrainConfig.validate`.
"""

from __future__ import annotations

import re
from typing import Any

from probe.errors import ConfigError, DataError

#: A study name: letters, digits, ``_``, ``-``, ``.``; not starting with a dot (so never ``.`` or ``..``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def check_study_name(name: Any, source: str) -> str:
    """``name`` as a validated study name; ConfigError naming the file and the value otherwise.

    The name becomes a folder (``trained_models/<name>``, ``reports/<name>``): path separators, ``..`` and
    other names starting with a dot, and names longer than 128 characters are refused."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{source}: study.name = {name!r} must be 1-128 letters, digits, '_', '-' or '.', "
                          f"not starting with '.' (it names the output folder; no path separators, no '..')")
    return name


def check_cell_data(config: Any, source: str) -> None:
    """The background sources a cell's training and evaluation build (``config``: a
    :class:`~probe.train.config.TrainConfig`). Raises ConfigError naming ``source``, the key and the source's
    valid options."""
    from probe.data.backgrounds.base import check_background
    from probe.data.paired import evaluation_info

    d, e = config.data, config.eval
    ev = evaluation_info({"data": vars(d), "eval": vars(e), "degradation": config.degradation})  # no deep copy
    eval_key = "eval.background_options" if e.background_options is not None else "data.background_options"
    for key, name, patch, options in [("data.background_options", d.background, d.patch, d.background_options),
                                      (eval_key, ev["background"], ev["patch"], ev["background_options"])]:
        try:
            check_background(name, patch, options)
        except (ConfigError, DataError) as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None


# ---------------------------------------------------------------------------------------- linear planning
def config_group(dotted: str) -> str:
    """The part of a training config a dotted key belongs to, for :func:`distinct_cells`: its top-level
    section, with ``data`` and ``eval`` joined (the evaluation set defaults to the training source)."""
    head = dotted.split(".")[0]
    return "data+eval" if head in ("data", "eval") else head


def axis_groups(spec: Any) -> dict[str, set[str]]:
    """Axis (or explicit-cell key) → the config groups its values change. A level axis changes the groups of
    its override keys, plus a group of its own (so each of its values is resolved at least once)."""
    from probe.grid.spec import resolve_axis

    keys = list(spec.axes) + [k for c in spec.explicit_cells for k in c]
    out: dict[str, set[str]] = {}
    for key in keys:
        if key in out:
            continue
        if key in spec.levels:
            out[key] = {f"level:{key}"} | {config_group(resolve_axis(d)) for table in spec.levels[key].values()
                                           for d in table}
        else:
            out[key] = {config_group(resolve_axis(key))}
    return out


def _value_key(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return type(value).__name__, value  # 1, 1.0 and True are different config values
    import json

    return "json", json.dumps(value, sort_keys=True, default=str)


def distinct_cells(spec: Any, cells: list[Any], groups: set[str] | None = None) -> dict[tuple, list[Any]]:
    """Cells grouped by what they set in the config ``groups`` (default: all): ``{signature: [cells]}``.

    Two cells with one signature have equal config sections in those groups. :meth:`StudySpec.validate`
    builds one config per new (group, values) pair: every check of a training config reads one group only
    (:meth:`probe.train.config.TrainConfig.validate`, :func:`check_cell_data`), so a cell whose every group was
    seen valid is valid. :func:`probe.grid.estimate.estimate_study` prices one config per signature. Linear in
    cells: a 100,000-cell plan over a few axes builds a few hundred configs, not 100,000."""
    touched = axis_groups(spec)
    out: dict[tuple, list[Any]] = {}
    for cell in cells:
        parts = []
        for axis, value in cell.values:
            wanted = touched.get(axis, set()) if groups is None else touched.get(axis, set()) & groups
            if wanted:
                parts.append((axis, _value_key(value)))
        out.setdefault(tuple(parts), []).append(cell)
    return out


def cells_to_validate(spec: Any, cells: list[Any]) -> list[Any]:
    """The cells whose configs :meth:`StudySpec.validate` must build: each cell that brings a (group, values)
    pair not seen before (see :func:`distinct_cells`); the first cell always."""
    touched = axis_groups(spec)
    every = sorted(set().union(*touched.values())) if touched else []
    seen: set[tuple] = set()
    chosen = []
    for cell in cells:
        by_group: dict[str, list] = {}
        for axis, value in cell.values:
            for group in touched.get(axis, ()):
                by_group.setdefault(group, []).append((axis, _value_key(value)))
        # a group the cell leaves at its base value is a value too (the base must be seen valid as well)
        keys = {(group, tuple(by_group.get(group, ()))) for group in every} or {("", ())}
        if not keys <= seen:
            seen |= keys
            chosen.append(cell)
    return chosen
