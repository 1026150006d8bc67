"""What every report section gets: the tidy metrics, the store, the study spec, and a figure saver."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import DataError

ID_SPLIT = "id"
NON_DEGRADED = {"clean"}
#: Split labels of results that pool every split (e.g. the ddr probe's "all"): not test splits.
POOLED_SPLITS = {"all"}
#: Study-level pseudo models (probe.cross_models.STUDY_MODEL_ID: model x model CKA), not models.
STUDY_MODEL_IDS = {"_study"}


def split_anchors(metrics: Any) -> tuple[Any, Any]:
    """(trained models' rows, calibration anchors' rows): anchors carry a non-empty ``role`` in their info
    (``role = "anchor"``, see probe.anchors); every figure and table but the trust section uses the first."""
    if "role" not in metrics:
        return metrics, metrics.iloc[0:0]
    role = metrics["role"]
    anchor = role.notna() & ~role.astype(str).isin(["", "model", "nan", "None"])
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
