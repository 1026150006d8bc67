"""``probe measure MY.pth --arch … --beside reference``: measure a network beside a trained grid in one store.

The grid (``reference`` = the shipped reference grid ``trained_models/reference/derain_ntrend_long``, or any grid
directory) is measured into the store first — results already there are kept — and its ``study.json`` is
copied next to the store, so the network is then measured like for like on every evaluation set of the grid
(one per background source: :func:`probe.measure.plan.study_eval_sets`); the report compares it per source.
:func:`evaluation_note` says which. ``probe report`` on the store's folder shows the network beside the grid::

    from probe.measure.beside import measure_beside
    measure_beside("mine.pth", "reference", family="resnet", size="tiny")   # -> reports/beside_derain_ntrend_long/

Errors: :class:`probe.errors.ConfigError` naming the value when ``beside`` is neither ``reference`` nor a
grid directory (a folder with ``study.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.errors import ConfigError

#: what ``--beside reference`` names, relative to the working directory or to the source checkout
REFERENCE = Path("trained_models") / "reference" / "derain_ntrend_long"


def resolve_grid(beside: str | Path) -> Path:
    """The grid directory ``beside`` names: ``reference`` (:data:`REFERENCE`) or a folder with ``study.json``."""
    if str(beside) == "reference":
        for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
            if (root / REFERENCE / "study.json").is_file():
                return root / REFERENCE
        raise ConfigError(f"--beside reference: {REFERENCE} not found here or in probe's source checkout "
                          "(the reference grid ships with the repository, not the wheel)")
    path = Path(beside)
    if not (path / "study.json").is_file():
        raise ConfigError(f"--beside {str(beside)!r}: not a grid directory (no study.json); give a folder "
                          "written by `probe grid run`, or 'reference'")
    return path


def evaluation_note(grid: Path) -> str:
    """Which evaluation sets an external network gets beside ``grid`` (every source's), in words."""
    from probe.records import StudyRecord

    cells = StudyRecord.load(grid).cells
    sources = sorted({str((c.get("axes") or {}).get("background")) for c in cells
                      if (c.get("axes") or {}).get("background")})
    if not sources:
        return "your network is evaluated on the study's splits, the same images as the grid's models"
    return (f"your network is evaluated on every background source of the grid ({', '.join(sources)}), on the "
            "same images, splits and rain as that source's grid models; the report compares it per source")


def readings(grid: Path) -> list[str]:
    """The study probes that give a network its reading among ``grid``'s models on the grid's task (their
    ``reading_tasks``; for deraining the shortcut score, validated there only: docs/results/README.md)."""
    from probe.probes import PROBES
    from probe.records import StudyRecord
    from probe.tasks import task_of_degradation

    study = StudyRecord.load(grid)
    base = ((study.spec or {}).get("base") or {}).get("degradation")
    task = study.task or task_of_degradation(base)
    return [n for n in PROBES.names() if task in getattr(PROBES.get(n), "reading_tasks", ())]


def default_probes(grid: Path) -> list[str]:
    """The probes a network gets beside ``grid`` when none are named: the study's own probes (default
    generalization and decomposition) and its :func:`readings` (on a deraining grid, the shortcut reading; it
    runs a probe-set attribution on every model once)."""
    from probe.measure.plan import DEFAULT_PROBES
    from probe.records import StudyRecord

    names = list(StudyRecord.load(grid).probes or DEFAULT_PROBES)
    return names + [n for n in readings(grid) if n not in names]


def measure_beside(path: str | Path, beside: str | Path, out: str | Path | None = None,
                   probes: list[str] | None = None, device: str | None = None, splits: list[str] | None = None,
                   force: bool = False, **external: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Measure the grid ``beside`` and then the network ``path`` into one store (default
    ``reports/beside_<study>/results.h5``). Returns the two summaries of :func:`probe.measure.core.measure`.

    ``probes``: default the grid study's probes plus ``shortcut`` (:func:`default_probes`), so the network gets
    its shortcut reading; results already in the store are reused (the grid's are measured once)."""
    from probe.measure.core import measure

    grid = resolve_grid(beside)
    probes = list(probes) if probes else default_probes(grid)
    out = Path(out) if out is not None else Path("reports") / f"beside_{grid.name}" / "results.h5"
    common = {"probes": probes, "out": out, "device": device, "splits": splits, "force": force,
              "probe_params": external.pop("probe_params", None)}  # the same parameters for both: like for like
    grid_summary = measure(grid, **common)
    return grid_summary, measure(path, **common, **external)
