"""The shipped reference grid (trained_models/reference/derain_ntrend): complete, intact, small, loadable, and
the study it records is the demo rung of the shipped n-trend spec."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "trained_models" / "reference" / "derain_ntrend"

pytestmark = pytest.mark.skipif(not GRID.is_dir(), reason="reference grid not shipped in this checkout")


def test_every_cell_of_the_demo_rung_is_shipped_intact():
    from probe.study import load_study

    spec = load_study(ROOT / "analyses" / "derain_ntrend.toml", scale="demo")
    study = json.loads((GRID / "study.json").read_text())
    assert study["name"] == spec.name and sorted(c["id"] for c in study["cells"]) == sorted(c.id for c in spec.cells())
    total = 0
    for cell in spec.cells():
        run = json.loads((GRID / cell.id / "run.json").read_text())
        weights = GRID / cell.id / "model.safetensors"
        assert run["status"] == "done" and run["axes"] == cell.axes
        assert run["config"]["train"]["iterations"] == spec.config_for(cell).train.iterations
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == run["weights_sha256"]
        total += weights.stat().st_size + (GRID / cell.id / "run.json").stat().st_size
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
