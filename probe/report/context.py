"""What every report section gets: the tidy metrics, the store, the study spec, and a figure saver."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from probe.errors import DataError

ID_SPLIT = "id"
NON_DEGRADED = {"clean"}
#: Split labels of results that pool every split (e.g. the ddr probe's "all") or serve one probe (the shortcut
#: score's common "probe_set": training rain on every source's backgrounds): not test splits.
POOLED_SPLITS = {"all", "probe_set"}
#: Study-level pseudo models (probe.cross_models.STUDY_MODEL_ID: model x model CKA), not models.
STUDY_MODEL_IDS = {"_study"}


#: Pseudo probe holding stored failures (probe.measure.failures.FAILED_PROBE).
FAILED_PROBE = "failed"


def is_anchor(metrics: Any) -> Any:
    """Boolean Series: rows of calibration anchors (model info ``role`` set, e.g. ``"anchor"``)."""
    import pandas as pd

    if "role" not in metrics:
        return pd.Series(False, index=metrics.index)
    role = metrics["role"]
    return ~(role.isna() | role.astype(str).isin(["", "model", "nan", "None"]))


def without_axes(metrics: Any) -> Any:
    """Boolean Series: rows of external networks — models without grid axes (no ``n_backgrounds``) that are
    not calibration anchors."""
    import pandas as pd

    if "n_backgrounds" not in metrics:
        return ~is_anchor(metrics)
    return pd.to_numeric(metrics["n_backgrounds"], errors="coerce").isna() & ~is_anchor(metrics)


def with_axes(metrics: Any) -> Any:
    """Boolean Series: rows of the grid's trained models (``n_backgrounds`` set, not anchors)."""
    import pandas as pd

    if "n_backgrounds" not in metrics:
        return pd.Series(False, index=metrics.index)
    return pd.to_numeric(metrics["n_backgrounds"], errors="coerce").notna() & ~is_anchor(metrics)


def display_names(metrics: Any) -> Any:
    """Series: each row's model display name (``model_name`` from the model card / --name, else the id)."""
    if "model_name" not in metrics:
        return metrics["model_id"].astype(str)
    return metrics["model_name"].where(metrics["model_name"].notna(), metrics["model_id"]).astype(str)


def evaluation_kind(eval_json: Any) -> str:
    """``"real pairs"`` for results on folders of real pairs, else ``"synthetic"``."""
    try:
        return "real pairs" if json.loads(eval_json or "{}").get("source") == "paired_folders" else "synthetic"
    except (TypeError, ValueError):
        return "synthetic"


def split_anchors(metrics: Any) -> tuple[Any, Any]:
    """(trained models' rows, calibration anchors' rows): anchors carry a non-empty ``role`` in their info
    (``role = "anchor"``, see probe.anchors); every figure and table but the trust section uses the first."""
    anchor = is_anchor(metrics)
    return metrics[~anchor].reset_index(drop=True), metrics[anchor].reset_index(drop=True)


def ood_split_names(splits: Any) -> list[str]:
    """The out-of-distribution test splits among ``splits``: every degraded split except ``id``."""
    return sorted(set(splits) - NON_DEGRADED - POOLED_SPLITS - {ID_SPLIT})


@dataclass
class Figure:
    name: str
    title: str
    caption: str = ""
    png: str = ""
    pdf: str = ""


@dataclass
class Table:
    name: str
    title: str
    frame: Any  # pandas.DataFrame
    caption: str = ""


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    text: str = ""


@dataclass
class ReportContext:
    """Inputs of a report: ``<dir>/results.h5`` (+ ``study.json`` if measured from a grid)."""

    directory: Path
    store: Path
    metrics: Any  # pandas.DataFrame from probe.store.read_metrics: the study's trained models only
    study: dict[str, Any] | None = None
    anchors: Any = None  # the calibration anchors' rows (info role = "anchor", probe.anchors), or None

    @classmethod
    def load(cls, directory: str | Path) -> ReportContext:
        from probe.store import read_metrics

        directory = Path(directory)
        store = directory / "results.h5" if directory.is_dir() else directory
        if not store.is_file():
            raise DataError(f"{store}: no result store (run `probe measure` first)")
        metrics = read_metrics(store)
        study_file = store.parent / "study.json"
        name = json.loads(study_file.read_text(encoding="utf-8")).get("name") if study_file.is_file() else None
        if "study" in metrics and metrics["study"].nunique() > 1 and name:  # several studies share the store:
            metrics = metrics[metrics["study"].isin([name, ""])].reset_index(drop=True)  # this folder's study
        anchors = None
        if len(metrics):
            metrics = metrics[~metrics["model_id"].isin(STUDY_MODEL_IDS)]
            metrics, anchors = split_anchors(metrics.reset_index(drop=True))
        study = None
        study_file = store.parent / "study.json"
        if study_file.is_file():
            study = json.loads(study_file.read_text(encoding="utf-8"))
        return cls(directory=store.parent, store=store, metrics=metrics, study=study, anchors=anchors)

    @property
    def figures_dir(self) -> Path:
        path = self.directory / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def probe_metrics(self, probe: str):
        return self.metrics[self.metrics["probe"] == probe] if len(self.metrics) else self.metrics

    def grid_metrics(self, probe: str | None = None):
        """Rows of models with grid axes (``n_backgrounds``), optionally of one probe."""
        frame = self.metrics if probe is None else self.probe_metrics(probe)
        if frame.empty:
            return frame
        return frame[with_axes(frame)]

    def external_metrics(self, probe: str | None = None):
        """Rows of models without grid axes (external networks), with a ``name`` column, of one probe."""
        frame = self.metrics if probe is None else self.probe_metrics(probe)
        if frame.empty:
            return frame.assign(name=[])
        frame = frame[without_axes(frame) & (frame["probe"] != FAILED_PROBE)]
        return frame.assign(name=display_names(frame))

    @cached_property
    def task(self):
        """The study's :class:`probe.tasks.Task` (its words and headline metrics), from the stored rows."""
        from probe.tasks import task_of

        return task_of(self.metrics)

    def families(self) -> list[str]:
        return sorted(self.metrics["family"].dropna().unique()) if "family" in self.metrics else []

    def ood_splits(self) -> list[str]:
        return ood_split_names(self.metrics.get("split", []))

    def save(self, fig: Any, name: str, title: str, caption: str = "") -> Figure:
        """Save a matplotlib figure as PNG and PDF under ``figures/`` and close it."""
        import matplotlib.pyplot as plt

        png = self.figures_dir / f"{name}.png"
        pdf = self.figures_dir / f"{name}.pdf"
        fig.savefig(png, dpi=130, bbox_inches="tight")
        fig.savefig(pdf, bbox_inches="tight")
        plt.close(fig)
        return Figure(name, title, caption, png=str(png.relative_to(self.directory)),
                      pdf=str(pdf.relative_to(self.directory)))
