"""The whole study plan, validated when it is loaded: the grid (cells, configs, priors) *and* the probes.

:class:`probe.grid.spec.StudySpec` checks what the grid owns (top-level and ``[study]`` keys, axes, levels,
priors, every cell's training config). The probe part of the plan — ``[study] probes`` and every table of
``[study.probe_params]`` — is checked here, because the grid layer never imports the probe registry
(docs/contracts.md, "Layers"). Every entry point that loads a study calls :func:`load_study`, so a typo in a
probe parameter fails in one line (exit code 2) before anything trains, not after the whole grid::

    from probe.study import load_study
    spec = load_study("analyses/derain_complexity.toml")    # StudySpec; ConfigError naming file and key
    [cell.id for cell in spec.cells()]

Errors: :class:`probe.errors.ConfigError` — an unknown probe name (``FILE: unknown probe 'x'; …``, the
registry's message), a ``[study.probe_params.NAME]`` table for a probe that does not exist, or a parameter the
probe refuses (the probe's own message, prefixed with the file and ``study.probe_params.NAME``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.grid.spec import StudySpec

__all__ = ["DEFAULT_SPEC", "bundled_spec", "check_probes", "grid_run_cli", "load_study"]

#: the default study shipped with the package (``probe demo``; the splits an external network sees alone)
DEFAULT_SPEC = "derain_complexity.toml"


def bundled_spec(name: str = DEFAULT_SPEC) -> Path:
    """The study spec shipped with the package (``analyses/`` of the source tree)."""
    for candidate in (Path("analyses") / name, Path(__file__).resolve().parent / "analyses" / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"bundled study spec {name!r} not found")


def load_study(spec: str | Path | Mapping[str, Any] | StudySpec, source: str | None = None,
               scale: str | None = None) -> StudySpec:
    """Load (a TOML path or a spec table) and validate a whole study; a :class:`StudySpec` is validated as is.

    ``source`` names a table's origin in messages (default ``"spec"``); ``scale`` picks a rung of the spec's
    ladder (:mod:`probe.grid.scale`; default: the spec as written). Returns the :class:`StudySpec`.
    """
    if isinstance(spec, StudySpec):
        if scale is not None and scale != spec.scale:
            raise ConfigError(f"{spec.source}: already resolved to rung {spec.scale!r}; load the file again "
                              f"for --scale {scale}")
        loaded = spec
    elif isinstance(spec, Mapping):
        loaded = StudySpec.from_dict(dict(spec), source=source or "spec", scale=scale)
    else:
        loaded = StudySpec.from_toml(spec, scale=scale)
    check_probes(loaded.probes, loaded.probe_params, loaded.source)
    return loaded


def check_probes(names: Sequence[str], probe_params: Mapping[str, Mapping[str, Any]], source: str = "spec"
                 ) -> None:
    """Every probe in ``names`` exists, and every ``probe_params`` table builds its probe.

    A table for a probe that is not in ``names`` is still checked (``probe measure --probes`` may select it).
    Building a probe validates its parameters without side effects (``Probe.__init__``).
    """
    from probe.probes import PROBES

    for name in names:
        try:
            PROBES.get(name)
        except ConfigError as exc:  # the registry's message, with the file it came from
            raise ConfigError(f"{source}: {exc}") from exc
    for name, params in probe_params.items():
        if name not in PROBES:
            raise ConfigError(f"{source}: unknown probe {name!r} in study.probe_params; "
                              f"available: {', '.join(PROBES.names())}")
        try:
            PROBES.get(name)(**dict(params))
        except ConfigError as exc:
            raise ConfigError(f"{source}: study.probe_params.{name}: {exc}") from exc


def grid_run_cli(args: argparse.Namespace) -> int:
    """``probe grid run SPEC``: validate the whole plan, then hand the spec to :func:`probe.grid.cli.run_cli`."""
    from probe.grid.cli import run_cli

    return run_cli(args, spec=load_study(args.spec, scale=getattr(args, "scale", None)))
