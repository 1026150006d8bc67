"""Measuring a study is one store transaction: a 40-model grid is committed (copied and replaced) once, its
study-level model × model CKA included; measuring it again writes nothing and commits nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.grid.runner import run_grid
from probe.measure import measure
from probe.records import study_store_path
from probe.store import list_entries

SPEC = """
[study]
name = "forty"
probes = ["generalization", "cka"]
[study.probe_params.cka]
convention = "pooled"
n_images = 4
batch_size = 4
[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
patch = 16
background = "smooth"
[base.train]
iterations = 1
batch = 2
log_every = 1
val_every = 0
[base.eval]
n_images = 4
[base.eval.splits.id]
type = "rain"
preset = "small"
[axes]
n_backgrounds = [1, 2, 3, 4, 5]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""


@pytest.fixture(scope="module")
def forty(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forty")
    (root / "forty.toml").write_text(SPEC)
    summary = run_grid(root / "forty.toml", root / "models", executor="batched", show_progress=False)
    assert summary["done"] == 40 and summary["failed"] == 0
    return root


def _count_commits(monkeypatch, store: Path) -> list[str]:
    import probe.store.writer as writer

    commits: list[str] = []
    real = writer.os.replace

    def counting(src, dst):
        if Path(dst) == store:
            commits.append(str(src))
        return real(src, dst)

    monkeypatch.setattr(writer.os, "replace", counting)
    return commits


def test_measuring_forty_models_is_one_store_commit(forty, monkeypatch):
    store = forty / "reports" / "results.h5"
    commits = _count_commits(monkeypatch, store)
    summary = measure(forty / "models", out=store, show_progress=False)
    assert summary["runs"] == 40 and summary["computed"] == 80 and not summary["failed"]
    assert summary["cka_models"]["computed"] is True  # the study probe brought along by cka, registry entry
    assert len(commits) == 1
    entries = list_entries(store)
    per_model = entries[entries["probe"].isin(["generalization", "cka"])]
    assert per_model.groupby("probe")["model_id"].nunique().to_dict() == {"cka": 40, "generalization": 40}
    assert (entries["probe"] == "cka_models").sum() == 0  # no pseudo model in the models' store
    study = list_entries(study_store_path(store))  # study-level results: their own store, keyed by the study
    assert list(study["model_id"]) == ["forty"] and list(study["probe"]) == ["cka_models"]

    again = measure(forty / "models", out=store, show_progress=False)
    assert again["computed"] == 0 and again["skipped"] == 80
    assert len(commits) == 1  # nothing new: no copy, no commit


def test_the_shortcut_score_joins_the_same_commit(forty, monkeypatch):
    """The study-level shortcut score reads the per-model results of its own transaction: still one commit,
    scores for every model; a second call with nothing new commits nothing."""
    from probe.store import read_metrics

    store = forty / "reports_shortcut" / "results.h5"
    commits = _count_commits(monkeypatch, store)
    summary = measure(forty / "models", out=store, probes=["generalization", "decomposition", "shortcut"],
                      show_progress=False)
    assert not summary["failed"] and summary["shortcut"] == 40
    assert len(commits) == 1
    scores = read_metrics(store).query("probe == 'shortcut' and metric == 'score'")
    assert scores["model_id"].nunique() == 40 and scores["value"].notna().all()
    again = measure(forty / "models", out=store, probes=["generalization", "decomposition", "shortcut"],
                    show_progress=False)
    assert again["computed"] == 0 and again["shortcut"] == 0 and len(commits) == 1
