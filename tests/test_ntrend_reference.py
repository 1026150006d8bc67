"""The shipped reference grids (trained_models/reference/derain_ntrend: the n-trend's demo rung;
derain_ntrend_long: its long rung, what ``--beside reference`` measures): complete, intact, small, loadable,
and the study each records is that rung of the shipped n-trend spec."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "trained_models" / "reference"
GRID = SHIPPED / "derain_ntrend_long"
GRIDS = {"demo": SHIPPED / "derain_ntrend", "long": GRID}

pytestmark = pytest.mark.skipif(not GRID.is_dir(), reason="reference grid not shipped in this checkout")


def test_all_shipped_weights_stay_small():
    total = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert total <= 30 * 2**20


@pytest.mark.parametrize("rung", sorted(GRIDS))
def test_every_cell_of_the_rung_is_shipped_intact(rung):
    from probe.study import load_study

    grid = GRIDS[rung]
    spec = load_study(ROOT / "analyses" / "derain_ntrend.toml", scale=rung)
    study = json.loads((grid / "study.json").read_text())
    assert study["name"] == spec.name and sorted(c["id"] for c in study["cells"]) == sorted(c.id for c in spec.cells())
    total = 0
    for cell in spec.cells():
        run = json.loads((grid / cell.id / "run.json").read_text())
        weights = grid / cell.id / "model.safetensors"
        assert run["status"] == "done" and run["axes"] == cell.axes
        assert run["config"]["train"]["iterations"] == spec.config_for(cell).train.iterations
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == run["weights_sha256"]
        total += weights.stat().st_size + (grid / cell.id / "run.json").stat().st_size
    assert total <= 30 * 2**20


def test_a_reference_network_loads_and_removes_its_training_rain():
    from probe.data.backgrounds import make_background
    from probe.data.degradations import make_degradation
    from probe.models.checkpoint import load_model

    cell = GRID / "background-smooth__n_backgrounds-16__seed-0"
    model = load_model(cell / "model.safetensors", family="resnet", size="tiny").eval()
    clean = make_background("smooth", 48, seed=7).images(4, split="test")
    batch = make_degradation({"type": "rain", "preset": "small"}).apply(clean, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(batch.degraded)
    mse_in = torch.mean((batch.degraded - clean) ** 2)
    mse_out = torch.mean((out - clean) ** 2)
    assert out.shape == clean.shape and mse_out < 0.5 * mse_in  # it derains (the identity would not)
