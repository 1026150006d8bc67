"""The batched grid executor equals training each cell alone; --gpus and the dry-run time estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import study_toml, tiny_study
from safetensors.torch import load_file

from probe.cli import main
from probe.grid.batched import plan_groups
from probe.grid.estimate import estimate_study, step_ms
from probe.grid.runner import run_grid
from probe.grid.spec import StudySpec

BATCH = {  # changes to the suite's tiny study: no probes, default degradation and splits, two axes and one cell
    "study.name": "batchstudy", "study.probes": None, "base.degradation": None,
    "base.data.background": "smooth", "base.eval": {"n_images": 2},
    "base.train": {"iterations": 5, "batch": 2, "lr": 1e-3, "log_every": 2, "val_every": 0},
    "axes": {"n_backgrounds": [1, 3], "lr": [1e-3, 3e-4]},
    "cells": [{"n_backgrounds": 2, "lr": 1e-3, "seed": 7, "train.grad_clip": 0.01, "train.schedule": "step"}],
}
SPEC = study_toml(tiny_study(BATCH))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched")
    (root / "s.toml").write_text(SPEC)
    batched = run_grid(root / "s.toml", root / "batched", executor="batched", show_progress=False)
    alone = run_grid(root / "s.toml", root / "alone", executor="local", workers=1, show_progress=False)
    return root, batched, alone


def test_batched_cells_equal_cells_trained_alone(both):
    root, batched, alone = both
    assert batched["done"] == alone["done"] == 5 and batched["failed"] == 0
    for cell in alone["outcomes"]:
        a, b = _weights(root / "alone" / cell), _weights(root / "batched" / cell)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-6)
        ra = json.loads((root / "alone" / cell / "run.json").read_text())
        rb = json.loads((root / "batched" / cell / "run.json").read_text())
        assert rb["step"]["executor"] == "batched" and rb["status"] == "done"
        for metric, value in ra["metrics"].items():
            assert rb["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-5), (cell, metric)


def test_cells_differ_so_the_equality_is_not_trivial(both):
    root, _, alone = both
    cells = sorted(alone["outcomes"])
    first = _weights(root / "alone" / cells[0])
    assert any(not torch.allclose(first[k], _weights(root / "alone" / c)[k]) for c in cells[1:] for k in first)


def test_a_finished_batched_grid_is_not_retrained(both):
    root, _, _ = both
    again = run_grid(root / "s.toml", root / "batched", executor="batched", show_progress=False)
    assert again["skipped"] == 5 and again["outcomes"] == {}


def test_a_diverging_cell_fails_alone_and_its_group_finishes(tmp_path):
    spec = study_toml(tiny_study({**BATCH, "axes.lr": [1e-3, 1e38], "cells": None}))
    (tmp_path / "s.toml").write_text(spec)
    summary = run_grid(tmp_path / "s.toml", tmp_path / "out", executor="batched", show_progress=False)
    assert summary["failed"] == 2 and summary["done"] == 2
    failed = [c for c, o in summary["outcomes"].items() if o["status"] == "failed"]
    assert all("lr-1e+38" in c for c in failed)
    record = json.loads((tmp_path / "out" / failed[0] / "run.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] >= 1 and "non-finite loss" in record["error"]
    assert not (tmp_path / "out" / failed[0] / "model.safetensors").exists()


def test_groups_follow_the_network_structure():
    todo = [("a", {"model": {"family": "resnet", "size": "tiny", "kwargs": {}}, "data": {"patch": 24},
                   "train": {"batch": 2, "iterations": 5, "loss": "l1", "ema": 0.0}}, "pa")]
    other = json.loads(json.dumps(todo[0][1]))
    other["model"]["family"] = "unet"
    todo += [("b", other, "pb"), ("c", todo[0][1], "pc"), ("d", todo[0][1], "pd")]
    groups = plan_groups(todo, max_cells=2)
    assert [[i for i, _, _ in g] for g in groups] == [["a", "c"], ["d"], ["b"]]


def test_gpus_are_validated_with_one_line(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SPEC)
    code = main(["grid", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--gpus", "0,x"])
    assert code == 2 and "--gpus '0,x'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code = main(["grid", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--gpus", "0"])
        assert code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_dry_run_prints_the_expected_gpu_time(capsys):
    root = Path(__file__).resolve().parent.parent
    code = main(["grid", "run", str(root / "analyses" / "derain_complexity_gpu_day.toml"), "--dry-run",
                 "--out", "/nonexistent/probe-dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "expected GPU wall time:" in out and "estimate" in out
    hours = float(out.split("expected GPU wall time:")[1].split(" h")[0])
    assert 18 <= hours <= 24, "the GPU-day spec must fit one GPU-day by its own estimate"


def test_step_time_estimate_scales_with_work():
    from probe.grid.estimate import STEP_MS

    paper = step_ms("resnet", "paper", 128, 16, "bf16")
    assert paper == STEP_MS[("resnet", "bf16")]  # the reference configuration reads the table as is
    assert step_ms("resnet", "paper", 128, 32, "bf16") == pytest.approx(2 * paper)
    assert step_ms("resnet", "tiny", 24, 2, "bf16") == 2.0  # launch-bound floor
    assert step_ms("resnet", "paper", 128, 16, "fp32") > paper
    assert step_ms("nosuchfamily", "paper", 128, 16) is None
    spec = StudySpec.from_toml(Path(__file__).resolve().parent.parent / "analyses" / "derain_complexity_gpu_day.toml")
    est = estimate_study(spec, gpus=2)
    assert est["hours"] == pytest.approx(est["gpu_hours"] / 2) and set(est["per_family"]) == {"resnet", "unet"}
