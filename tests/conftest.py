"""Shared fixtures: tiny configs, tiny studies and trained grids, so the whole suite stays fast on 2 cores.

- ``tiny_config``: one training config (a dict), a fresh copy per test.
- :func:`tiny_study` / :func:`study_toml`: the suite's one tiny study spec (3 cells of a tiny ResNet, 3
  iterations, 24 px) with dotted-path changes, and its TOML text.
- ``trained_grid``: a session-scoped factory ``trained_grid(spec) -> Path`` that trains each distinct spec once
  per test run and hands back the grid folder, shared and read-only: measure into a store outside it (copy
  it with ``shutil.copytree`` to change it). The session fails at its end if a test changed one.
- ``trained_run``: the same for one run directory, ``trained_run(config=None) -> Path`` (default: TINY_CONFIG).
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("PROBE_QUIET", "1")
torch.set_num_threads(1)

TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "model": {"family": "resnet", "size": "tiny"},
    "data": {"background": "smooth", "n_backgrounds": 4, "patch": 24, "clean_fraction": 0.1},
    "degradation": {"type": "rain", "preset": "small"},
    "train": {"iterations": 6, "batch": 4, "lr": 1e-3, "checkpoint_every": 2, "log_every": 2},
    "eval": {"n_images": 4, "splits": {"id": {"type": "rain", "preset": "small"},
                                       "ood": {"type": "rain", "preset": "large"}}},
}

TINY_STUDY: dict[str, Any] = {
    "study": {"name": "tiny_study", "probes": ["decomposition", "shortcut"]},
    "base": {
        "seed": 0,
        "device": "cpu",
        "model": {"family": "resnet", "size": "tiny"},
        "data": {"patch": 24},
        "degradation": {"type": "rain", "preset": "small"},
        "train": {"iterations": 3, "batch": 2},
        "eval": {"n_images": 3, "splits": {"id": {"type": "rain", "preset": "small"},
                                           "ood": {"type": "rain", "preset": "large"}}},
    },
    "axes": {"n_backgrounds": [1, 2, 4]},
}


# a stand-in BasicSR repository whose package __init__ files raise on purpose (as BasicSR's need cv2):
# it is read by the option-file tests, never collected as doctests
collect_ignore_glob = ["external_archs/basicsr_repo/*"]


@pytest.fixture
def tiny_config() -> dict:
    return copy.deepcopy(TINY_CONFIG)


def tiny_study(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fresh copy of :data:`TINY_STUDY` with ``changes`` applied.

    Keys are dotted paths into the spec (``"study.name"``, ``"base.eval.splits.ood_b"``, ``"axes"``); a value
    replaces what is there (a whole table for a table), ``None`` removes the key. Keys that contain dots
    themselves (``[levels]`` overrides such as ``"data.background"``) go inside a table value.
    """
    spec = copy.deepcopy(TINY_STUDY)
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        table = spec
        for key in parents:
            table = table.setdefault(key, {})
        if value is None:
            table.pop(last, None)
        else:
            table[last] = copy.deepcopy(value)
    return spec


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def study_toml(spec: dict[str, Any]) -> str:
    """TOML text of a spec made of tables, strings, numbers, booleans and lists (tables inside lists inline)."""
    lines: list[str] = []

    def table(body: dict[str, Any], path: list[str]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if path and (scalars or not any(isinstance(v, dict) for v in body.values())):
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table(v, [*path, k])

    table(spec, [])
    return "\n".join(lines) + "\n"


_FINGERPRINTS: dict[Path, dict[str, tuple[int, int]]] = {}


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def grid_changes(grid: Path) -> list[str]:
    """Files of a shared folder (from ``trained_grid`` or ``trained_run``) added, removed or rewritten since it
    was built."""
    before, now = _FINGERPRINTS[grid], _fingerprint(grid)
    return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


class _Shared:
    """Folders built once per test run by ``make(key, root) -> folder``, kept read-only and checked at the end."""

    def __init__(self, tmp_path_factory, kind: str):
        self.tmp, self.kind, self.built = tmp_path_factory, kind, {}

    def get(self, key: dict[str, Any], name: str, make: Callable[[Path], Path]) -> Path:
        text = json.dumps(key, sort_keys=True)
        if text not in self.built:
            folder = make(self.tmp.mktemp(f"{self.kind}_{name}"))
            _set_writable(folder, False)  # a guard where permissions bind (not for root)
            _FINGERPRINTS[folder] = _fingerprint(folder)
            self.built[text] = folder
        return self.built[text]

    def close(self) -> None:
        for folder in self.built.values():
            _set_writable(folder, True)
        changed = {str(f): grid_changes(f) for f in self.built.values() if grid_changes(f)}
        assert not changed, f"tests wrote into shared {self.kind}s (copy one before changing it): {changed}"


@pytest.fixture(scope="session")
def trained_grid(tmp_path_factory) -> Callable[..., Path]:
    """``trained_grid(spec, workers=1) -> Path``: the grid folder of ``spec`` (a dict, see :func:`tiny_study`),
    trained once per test run; every test asking for the same spec gets the same read-only folder, with the
    spec's TOML beside it (``grid.parent / "spec.toml"``). Fails the test when a cell fails."""
    from probe.grid.runner import run_grid

    shared = _Shared(tmp_path_factory, "grid")

    def build(spec: dict[str, Any], workers: int = 1) -> Path:
        def make(root: Path) -> Path:
            (root / "spec.toml").write_text(study_toml(spec), encoding="utf-8")
            summary = run_grid(root / "spec.toml", root / "models", workers=workers, show_progress=False)
            assert summary["failed"] == 0, summary
            return root / "models"

        return shared.get(spec, spec["study"]["name"], make)

    yield build
    shared.close()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[..., Path]:
    """``trained_run(config=None) -> Path``: a run directory trained from ``config`` (default
    :data:`TINY_CONFIG`) once per test run, shared and read-only like ``trained_grid``'s folders."""
    from probe.train import train

    shared = _Shared(tmp_path_factory, "run")

    def build(config: dict[str, Any] | None = None) -> Path:
        config = copy.deepcopy(config if config is not None else TINY_CONFIG)

        def make(root: Path) -> Path:
            assert train(copy.deepcopy(config), root / "run", show_progress=False)["status"] == "done"
            return root / "run"

        return shared.get(config, str(config.get("name", "run")), make)

    yield build
    shared.close()
