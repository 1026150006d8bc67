"""The package's shape, as /work/shared/ARCHITECTURE.md and docs/contracts.md draw it: module size and layers.

The import graph is read with ``ast`` from the source (module-level *and* lazy, function-level imports), so a
lazy import that crosses a layer is caught as well as an eager one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import probe

ROOT = Path(probe.__file__).parent
MAX_LINES = 400

# package -> packages of probe it must never import (docs/contracts.md, "Layers")
FORBIDDEN = {
    "data": {"models", "train", "grid", "methods", "probes", "measure", "store", "report"},
    "models": {"data", "train", "grid", "methods", "probes", "measure", "store", "report"},
    "train": {"grid", "methods", "probes", "measure", "store", "report"},
    "grid": {"methods", "probes", "measure", "store", "report"},
    "methods": {"train", "grid", "probes", "measure", "store", "report"},
    "probes": {"train", "grid", "measure", "report"},
    "store": {"data", "models", "train", "grid", "methods", "probes", "measure", "report"},
    "report": {"data", "models", "train", "grid", "methods", "probes", "measure"},
    # the ground floor: records import only errors and fsutil; analysis reads records and stores, never models
    "records": {"data", "models", "train", "grid", "methods", "probes", "measure", "store", "report", "analysis",
                "study", "demo", "shortcut", "anchors", "cross_models", "cli"},
    "analysis": {"data", "models", "train", "grid", "methods", "probes", "measure", "report", "demo", "cli"},
}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imported_packages(path: Path) -> dict[str, int]:
    return _imports(path.read_text(encoding="utf-8"), path.relative_to(ROOT.parent).with_suffix("").parts)


def _imports(source: str, rel: tuple[str, ...]) -> dict[str, int]:
    """First-level ``probe`` packages/modules imported anywhere in ``source`` (module ``rel``, e.g.
    ``("probe", "grid", "spec")``) → the first line doing so."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = list(rel[:-1] if rel[-1] != "__init__" else rel[:-1])
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] if module != "probe" else [f"probe.{a.name}" for a in node.names]
        for target in targets:
            parts = target.split(".")
            if parts[0] == "probe" and len(parts) > 1:
                found.setdefault(parts[1], node.lineno)
    return found


def test_no_module_exceeds_the_line_limit():
    long = {str(p.relative_to(ROOT.parent)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def test_the_import_graph_follows_the_layers():
    crossings = []
    for path in _modules():
        package = _package(path)
        for target, line in _imported_packages(path).items():
            if target in FORBIDDEN.get(package, ()):
                crossings.append(f"{path.relative_to(ROOT.parent)}:{line} imports probe.{target}")
    assert not crossings, "layer crossings:\n" + "\n".join(crossings)


@pytest.mark.parametrize("source, expected", [
    ("from probe.probes import PROBES\n", {"probes"}),
    ("def f():\n    import probe.report.html\n", {"report"}),
    ("from probe import store as s\n", {"store"}),
    ("from ..probes.base import Probe\n", {"probes"}),
])
def test_the_graph_reader_sees_every_import_form(source, expected):
    assert set(_imports(source, ("probe", "grid", "spec"))) == expected


def test_no_package_level_import_cycle():
    """No two first-level parts of probe import each other (e.g. measure <-> demo), lazily or not."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        package = _package(path)
        graph.setdefault(package, set()).update(t for t in _imported_packages(path) if t != package)
    cycles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                     if a in graph.get(b, ()) and a != "cli" and b != "cli"})
    assert not cycles, f"package-level import cycles: {cycles}"
