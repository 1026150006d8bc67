"""Identity by content (issue 22 item 3): a result is keyed by the weights' SHA-256, the probe's parameters and
a digest of the evaluation set's content. A retrained grid, a second study in the same store and re-exported
evaluation images are each measured afresh; what did not change is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import study_toml, tiny_study
from PIL import Image

from probe.grid.runner import run_grid
from probe.measure import measure
from probe.store import ResultStore, list_entries, read_metrics
from probe.store.identity import content_digest, eval_identity


def _spec(study: str, iterations: int) -> str:
    """The shared tiny study (conftest), shrunk: two cells, one split, one probe."""
    return study_toml(tiny_study({
        "study": {"name": study, "probes": ["generalization"]}, "base.data": {"patch": 16},
        "base.train": {"iterations": iterations, "batch": 2, "log_every": 1, "val_every": 0},
        "base.eval": {"n_images": 2, "splits": {"id": {"type": "rain", "preset": "small"}}},
        "axes": {"n_backgrounds": [1, 2]}}))


def _grid(root: Path, name: str, study: str, iterations: int) -> Path:
    (root / f"{name}.toml").write_text(_spec(study, iterations))
    summary = run_grid(root / f"{name}.toml", root / name, executor="batched", show_progress=False)
    assert summary["done"] == 2 and summary["failed"] == 0
    return root / name


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("identity")
    return {"first": _grid(root, "first", "alpha", 1), "retrained": _grid(root, "retrained", "alpha", 3),
            "second_study": _grid(root, "second", "beta", 1)}


def _weights(grid: Path) -> set[str]:
    return {json.loads(p.read_text())["weights_sha256"] for p in grid.rglob("run.json")}


@pytest.mark.slow
def test_a_retrained_grid_is_measured_afresh(grids, tmp_path):
    store = tmp_path / "rep" / "results.h5"
    first = measure(grids["first"], out=store, show_progress=False)
    assert first["computed"] == 2 and first["skipped"] == 0
    again = measure(grids["first"], out=store, show_progress=False)
    assert again["computed"] == 0 and again["skipped"] == 2  # nothing changed: skipped
    old = read_metrics(store).query("metric == 'psnr'").set_index(["model_id", "split"])["value"]

    retrained = measure(grids["retrained"], out=store, show_progress=False)  # same study, same ids, new weights
    assert retrained["computed"] == 2 and retrained["skipped"] == 0
    entries = list_entries(store)
    assert set(entries["sha256"]) == _weights(grids["retrained"])  # only the new weights' results remain
    assert not (set(entries["sha256"]) & _weights(grids["first"]))
    new = read_metrics(store).query("metric == 'psnr'").set_index(["model_id", "split"])["value"]
    assert list(new.index) == list(old.index) and not np.allclose(new.values, old.values)


def test_a_second_study_in_the_same_store_is_kept_apart(grids, tmp_path):
    store = tmp_path / "rep" / "results.h5"
    measure(grids["first"], out=store, show_progress=False)
    before = read_metrics(store, study="alpha")
    second = measure(grids["second_study"], out=store, show_progress=False)  # same model ids, other study
    assert second["computed"] == 2 and second["skipped"] == 0
    df = read_metrics(store)
    assert df.groupby("study")["model_id"].apply(lambda s: sorted(set(s))).to_dict() == {
        "alpha": sorted(set(before["model_id"])), "beta": sorted(set(before["model_id"]))}
    after = read_metrics(store, study="alpha")
    assert after[["model_id", "split", "metric", "value"]].equals(before[["model_id", "split", "metric", "value"]])
    entries = list_entries(store)
    assert set(entries[entries.study == "beta"]["sha256"]) == _weights(grids["second_study"])
    assert set(entries[entries.study == "alpha"]["sha256"]) == _weights(grids["first"])
    from probe.report.context import ReportContext

    shown = ReportContext.load(store.parent).metrics  # the report shows the study of the study.json beside it
    assert set(shown["study"]) == {"beta"} and len(shown) == len(df) // 2
    again = measure(grids["first"], out=store, show_progress=False)  # the first study's results are still there
    assert again["computed"] == 0 and again["skipped"] == 2


def _pairs(folder: Path, seed: int, n: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for sub in ("rain", "norain"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = rng.integers(0, 200, (24, 24, 3), dtype=np.uint8)
        rain = np.clip(clean.astype(int) + rng.integers(0, 56, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rain).save(folder / "rain" / f"{i:03d}.png")
        Image.fromarray(clean).save(folder / "norain" / f"{i:03d}.png")


def test_re_exported_evaluation_images_are_measured_afresh(grids, tmp_path):
    checkpoint = next(grids["first"].rglob("model.safetensors"), None) or next(grids["first"].rglob("*.safetensors"))
    folder = tmp_path / "pairs"
    _pairs(folder, 0)
    store = tmp_path / "ext" / "results.h5"
    kwargs = {"out": store, "probes": ["generalization"], "eval_folders": {"id": str(folder)}, "eval_patch": 16,
              "show_progress": False}
    assert measure(checkpoint, **kwargs)["computed"] == 1
    assert measure(checkpoint, **kwargs)["skipped"] == 1  # same files: skipped
    old = read_metrics(store)
    image = folder / "rain" / "001.png"  # re-exported: same name, other pixels
    pixels = np.asarray(Image.open(image)).copy()
    pixels[:4] = 255 - pixels[:4]
    Image.fromarray(pixels).save(image)
    redo = measure(checkpoint, **kwargs)
    assert redo["computed"] == 1 and redo["skipped"] == 0
    evals = {json.loads(e)["content"] for e in read_metrics(store)["eval"]}
    assert len(evals) == 2 and json.loads(old["eval"][0])["content"] in evals  # both sets, told apart


def test_the_content_digest_follows_images_and_description():
    from probe.probes.evaldata import eval_data_from_info

    info = {"background": "smooth", "background_options": {}, "n_images": 2, "patch": 16, "seed": 3,
            "splits": {"id": {"type": "rain", "preset": "small"}}}
    a, b = eval_data_from_info(info), eval_data_from_info(dict(info))
    assert content_digest(a) == content_digest(b) and content_digest(a).startswith("sha256:")
    other_seed = eval_data_from_info({**info, "seed": 4})
    assert content_digest(other_seed) != content_digest(a)
    b.splits["id"].degraded[0, 0, 0, 0] += 1e-3  # same description, one pixel differs: a different set
    assert content_digest(b) != content_digest(a)
    assert eval_identity(a)["content"] == content_digest(a) and "content" not in a.info


def test_key_for_and_has_identify_by_weights(tmp_path):
    from types import SimpleNamespace

    store = ResultStore(tmp_path / "results.h5", study="s")
    res = SimpleNamespace(arrays={}, metrics=[{"split": "id", "metric": "psnr", "value": 1.0}])
    store.write("m", {}, "gen", {"a": 1}, res, eval_info={"content": "sha256:x"}, sha256="w1")
    assert store.has(store.key_for("m", "gen", {"a": 1}, {"content": "sha256:x"}, sha256="w1"))
    assert not store.has(store.key_for("m", "gen", {"a": 1}, {"content": "sha256:x"}, sha256="w2"))
    assert not store.has(store.key_for("m", "gen", {"a": 1}, {"content": "sha256:y"}, sha256="w1"))
    assert not store.has(store.key_for("m", "gen", {"a": 1}, {"content": "sha256:x"}, sha256="w1", study="t"))
    assert not ResultStore(tmp_path / "results.h5").has("m", "gen", {"a": 1}, {"content": "sha256:x"})
