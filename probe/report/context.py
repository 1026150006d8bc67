"""What every report section gets: the tidy metrics, the store, the study spec, and a figure saver."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from probe.analysis.rows import (  # noqa: F401 - the row roles live in probe.analysis; re-exported for sections
    ID_SPLIT,
    NON_DEGRADED,
    POOLED_SPLITS,
    is_anchor,
    ood_split_names,
    with_axes,
    without_axes,
)
from probe.errors import DataError

#: The pseudo model under which stores written before the study store (probe.records.study_store_path) kept
#: study-level results (model x model CKA): read for old stores, never a model.
STUDY_MODEL_IDS = {"_study"}


#: Pseudo probe holding stored failures (probe.measure.failures.FAILED_PROBE).
FAILED_PROBE = "failed"


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
    #: what this table's blank cells (shown as n/a†) mean, when the section knows; else the report says only
    #: what is true of every blank (build.na_footnote)
    na_note: str = ""


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
    study_record: Any = None  # the probe.records.StudyRecord beside the store, or None

    @classmethod
    def load(cls, directory: str | Path) -> ReportContext:
        from probe.store import read_metrics

        directory = Path(directory)
        store = directory / "results.h5" if directory.is_dir() else directory
        if not store.is_file():
            raise DataError(f"{store}: no result store (run `probe measure` first)")
        from probe.records import STUDY_FILE, StudyRecord

        metrics = read_metrics(store)
        record = StudyRecord.load(store.parent) if (store.parent / STUDY_FILE).is_file() else None
        name = record.name if record is not None else None
        if "study" in metrics and metrics["study"].nunique() > 1 and name:  # several studies share the store:
            metrics = metrics[metrics["study"].isin([name, ""])].reset_index(drop=True)  # this folder's study
        anchors = None
        if len(metrics):
            metrics = metrics[~metrics["model_id"].isin(STUDY_MODEL_IDS)]
            metrics, anchors = split_anchors(metrics.reset_index(drop=True))
        return cls(directory=store.parent, store=store, metrics=metrics,
                   study=record.to_dict() if record is not None else None, anchors=anchors, study_record=record)

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
        """The study's :class:`probe.tasks.Task` (its words and headline metrics): the study record's task,
        else the models' stored ``task`` (read from the rows only for stores written before it was stored)."""
        from probe.tasks import study_task

        return study_task(self.metrics, getattr(self.study_record, "task", None))

    def families(self) -> list[str]:
        return sorted(self.metrics["family"].dropna().unique()) if "family" in self.metrics else []

    def ood_splits(self) -> list[str]:
        """The study's OOD test splits: of the synthetic evaluations only (folders of real pairs name their
        own splits, e.g. an option file's ``ValSet``; those are no unseen degradation of the study)."""
        if not len(self.metrics) or "split" not in self.metrics:
            return []
        if "eval" not in self.metrics:
            return ood_split_names(self.metrics["split"])
        kinds = {e: evaluation_kind(e) for e in self.metrics["eval"].dropna().unique()}
        real = self.metrics["eval"].map(kinds).eq("real pairs")
        return ood_split_names(self.metrics.loc[~real, "split"])

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
