"""``probe measure MY.safetensors --beside GRID``: a network measured beside a trained grid, in one store, on
the grid's own splits (a toy grid trained here; the shipped reference grid only for the name lookup)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.errors import ConfigError
from probe.measure.beside import REFERENCE, resolve_grid

ROOT = Path(__file__).resolve().parent.parent


def test_reference_and_bad_values(tmp_path):
    if (ROOT / REFERENCE / "study.json").is_file():
        assert resolve_grid("reference").resolve() == (ROOT / REFERENCE).resolve()
    with pytest.raises(ConfigError, match="not a grid directory"):
        resolve_grid(tmp_path)


@pytest.mark.slow
def test_a_network_is_measured_beside_a_grid(tmp_path, capsys):
    import pandas as pd

    from probe.cli import main
    from probe.grid.runner import run_grid
    from probe.store import read_metrics
    from probe.study import load_study

    spec = load_study({
        "study": {"name": "toy", "probes": ["generalization", "decomposition"]},
        "base": {"seed": 0, "model": {"family": "resnet", "size": "tiny"},
                 "data": {"background": "smooth", "n_backgrounds": 4, "patch": 16},
                 "degradation": {"type": "rain", "preset": "small"},
                 "train": {"iterations": 5, "batch": 2, "lr": 1e-3, "checkpoint_every": 0},
                 "eval": {"n_images": 2, "splits": {"id": {"type": "rain", "preset": "small"},
                                                    "ood": {"type": "rain", "preset": "large"}}}},
        "axes": {"n_backgrounds": [1, 2, 4]}})  # 3 trained models: the fewest a shortcut score is made from
    grid = tmp_path / "grid"
    assert run_grid(spec, grid, workers=1)["failed"] == 0
    weights = grid / spec.cells()[0].id / "model.safetensors"
    out = tmp_path / "beside" / "results.h5"
    assert main(["measure", str(weights), "--family", "resnet", "--size", "tiny", "--name", "mine",
                 "--beside", str(grid), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "measured 3 model(s) of toy beside it" in printed
    assert "measured mine (your network) beside toy: " in printed  # not "1 model(s) of toy", a grid's wording
    assert "measured 1 model(s)" not in printed
    assert "the same images as the grid's models" in printed  # the choice is said
    assert "probes: generalization, decomposition, shortcut (the grid study's, and shortcut" in printed
    metrics = read_metrics(out)
    dec = metrics[(metrics["probe"] == "decomposition") & (metrics["metric"] == "removal_ratio")]
    models = set(dec["model_id"])
    assert len(models) == 4 and set(dec["split"]) >= {"id", "ood"}
    # the network saw the first cell's images (every cell here is smooth): the same weights give the same numbers
    mine = dec[~dec["model_id"].isin([c.id for c in spec.cells()]) & dec["model_id"].str.contains("mine")]
    same = dec[dec["model_id"].str.endswith(spec.cells()[0].id)]
    assert len(mine) and len(same)
    pd.testing.assert_frame_equal(mine.groupby("split")["value"].mean().to_frame(),
                                  same.groupby("split")["value"].mean().to_frame(), check_exact=False, rtol=1e-4)
    # the shortcut reading, by default: the network placed among the grid's models with a CI over its images
    reading = metrics[(metrics["probe"] == "shortcut") & (metrics["metric"] == "percentile")
                      & metrics["model_id"].str.contains("mine")]
    assert len(reading) == 1 and 0 <= reading["value"].iloc[0] <= 100
