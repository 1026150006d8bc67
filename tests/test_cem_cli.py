"""`probe measure … --probes cem,attribution` from the CLI on grid models, an external network and the
anchors; the report's attribution section shows CEM beside IG with faithfulness curves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_study

from probe.cli import main
from probe.store import read_metrics

ARCHS = Path(__file__).parent / "external_archs"


@pytest.mark.slow
def test_measure_cem_on_grid_external_and_anchors_then_report(tmp_path, trained_grid):
    grid = trained_grid(tiny_study({"study.name": "cem_study", "axes": {"n_backgrounds": [1]},
                                    "base.eval.n_images": 2}))
    store = tmp_path / "rep" / "results.h5"
    assert main(["measure", str(grid), "--probes", "cem,attribution", "--anchors",
                 "identity,oracle", "--out", str(store), "-q"]) == 0
    import sys

    sys.path.insert(0, str(ARCHS))
    try:
        import nets
    finally:
        sys.path.remove(str(ARCHS))
    torch.manual_seed(0)
    torch.save(nets.MultiStage(width=8).state_dict(), tmp_path / "ext.pth")
    assert main(["measure", str(tmp_path / "ext.pth"), "--arch", f"{ARCHS / 'nets.py'}:MultiStage",
                 "--arch-kwargs", '{"width": 8}', "--probes", "cem", "--out", str(store), "-q"]) == 0
    frame = read_metrics(store)
    cem = frame[frame["probe"] == "cem"]
    models = set(cem["model_id"])
    assert len(models) >= 4, models  # the grid model, identity, oracle, the external network
    ident = cem[cem["model_id"].str.contains("identity") & (cem["metric"] == "rain_dependence")]
    assert (ident["value"] == 0).all()
    orc = cem[cem["model_id"].str.contains("oracle") & (cem["metric"] == "rain_dependence")]
    assert ((orc["value"] - 1).abs() < 1e-3).all()
    faith = frame[(frame["probe"] == "attribution") & (frame["metric"] == "deletion_gain")]
    assert len(faith) and "ci_low" in faith.columns
    assert main(["report", str(store.parent), "-q"]) == 0
    html = (store.parent / "report.html").read_text()
    assert "Causal effect maps" in html and "faithfulness" in html.lower()
