"""Study specs, the grid runner (local and Dask), resume after kill -9, and `probe grid` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import probe
from probe.cli import main
from probe.errors import ConfigError
from probe.grid.runner import grid_status, run_grid
from probe.grid.spec import StudySpec, cell_id

SPEC = """
[study]
name = "tinygrid"
probes = ["generalization", "decomposition"]

[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
background = "smooth"
patch = 16
[base.degradation]
type = "rain"
preset = "small"
[base.train]
iterations = {iterations}
batch = 2
checkpoint_every = 2
[base.eval]
n_images = 2
[base.eval.splits.id]
type = "rain"
preset = "small"
[base.eval.splits.ood]
type = "rain"
preset = "large"

[axes]
n_backgrounds = [1, 2]
seed = [0, 1]
"""


def write_spec(tmp_path: Path, iterations: int = 3, extra: str = "") -> Path:
    path = tmp_path / "tinygrid.toml"
    path.write_text(SPEC.format(iterations=iterations) + extra)
    return path


def test_spec_cells_have_stable_readable_ids(tmp_path):
    spec = StudySpec.from_toml(write_spec(tmp_path))
    ids = [c.id for c in spec.cells()]
    assert ids == ["n_backgrounds-1__seed-0", "n_backgrounds-1__seed-1", "n_backgrounds-2__seed-0",
                   "n_backgrounds-2__seed-1"]
    config = spec.config_for(spec.cells()[3])
    assert config.data.n_backgrounds == 2 and config.seed == 1
    assert config.axes == {"n_backgrounds": 2, "seed": 1}
    assert cell_id({"degradation": {"type": "rain", "preset": "large"}}).startswith("degradation-large-")


def test_explicit_cells_and_nested_axes(tmp_path):
    path = write_spec(tmp_path)
    text = path.read_text().replace("[axes]\nn_backgrounds = [1, 2]\nseed = [0, 1]\n",
                                    "[[cells]]\nbackground = \"smooth\"\nn_backgrounds = 3\n"
                                    "[[cells]]\n\"model.global_residual\" = false\n")
    path.write_text(text)
    spec = StudySpec.from_toml(path)
    assert [c.id for c in spec.cells()] == ["background-smooth__n_backgrounds-3", "global_residual-False"]
    assert spec.config_for(spec.cells()[1]).model.kwargs == {"global_residual": False}


@pytest.mark.parametrize("axes, message", [
    ("colour = [1, 2]", "unknown axis key 'colour'"),
    ("n_backgrounds = []", "axis 'n_backgrounds' is empty"),
    ("\"train.iteratons\" = [1]", "iteratons"),
    ("background = [\"smooth\", \"moon\"]", "data.background = 'moon'"),
])
def test_bad_axes_give_one_line_errors(tmp_path, axes, message):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("n_backgrounds = [1, 2]\nseed = [0, 1]", axes))
    with pytest.raises(ConfigError) as info:
        StudySpec.from_toml(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert main(["grid", "run", str(path), "--dry-run"]) == 2


def _shas(out: Path) -> dict[str, str]:
    frame = probe.catalog(out)
    return dict(zip(frame["run_id"], frame["weights_sha256"]))


def test_local_and_dask_executors_give_identical_catalogs_and_weights(tmp_path):
    spec = write_spec(tmp_path)
    local = run_grid(spec, tmp_path / "local", workers=2)
    assert local["done"] == 4 and local["failed"] == 0
    dask = run_grid(spec, tmp_path / "dask", executor="dask", workers=2)
    assert dask["done"] == 4 and dask["failed"] == 0
    a, b = probe.catalog(tmp_path / "local"), probe.catalog(tmp_path / "dask")
    assert len(a) == 4 and set(a["status"]) == {"done"}
    assert _shas(tmp_path / "local") == _shas(tmp_path / "dask")
    columns = ["run_id", "family", "n_backgrounds", "seed", "psnr_id", "psnr_ood"]
    assert a[columns].equals(b[columns])
    again = run_grid(spec, tmp_path / "local", workers=2)
    assert again["skipped"] == 4 and again["outcomes"] == {}


def test_kill_minus_nine_then_rerun_retrains_nothing_finished(tmp_path):
    spec = write_spec(tmp_path, iterations=40)
    out = tmp_path / "out"
    env = dict(os.environ, PROBE_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-m", "probe.cli", "grid", "run", str(spec), "--out", str(out),
                             "--workers", "1", "--quiet"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            done = [p for p in out.glob("*/run.json") if json.loads(p.read_text()).get("status") == "done"]
            if done:
                break
            time.sleep(0.2)
        assert done, "no cell finished in time"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = {p.parent.name: (p.parent / "model.safetensors").stat().st_mtime_ns for p in done}
    statuses = grid_status(out).set_index("cell")["status"].to_dict()
    assert "done" in statuses.values() and set(statuses.values()) <= {"done", "interrupted", "pending"}
    summary = run_grid(spec, out, workers=1)
    assert summary["done"] == 4 and summary["failed"] == 0
    for name, mtime in finished.items():
        assert (out / name / "model.safetensors").stat().st_mtime_ns == mtime, f"{name} was retrained"
        assert name not in summary["outcomes"]
    for path in sorted(out.glob("*/")):
        if (path / "run.json").exists():
            probe.load_model(path)  # verifies the SHA-256 of every checkpoint


def test_failed_cell_is_recorded_and_the_rest_go_on(tmp_path):
    path = write_spec(tmp_path)
    path.write_text(path.read_text().replace("seed = [0, 1]", "seed = [0]").replace(
        "n_backgrounds = [1, 2]", "background = [\"smooth\", \"faces\"]\nn_backgrounds = [500]"))
    summary = run_grid(StudySpec.from_toml(path), tmp_path / "out", workers=1)
    assert summary["failed"] == 1 and summary["done"] == 1
    status = grid_status(tmp_path / "out").set_index("cell")
    assert status.loc["background-faces__n_backgrounds-500__seed-0", "status"] == "failed"
    assert "faces" in status.loc["background-faces__n_backgrounds-500__seed-0", "error"]
    assert status.loc["background-smooth__n_backgrounds-500__seed-0", "status"] == "done"


def test_grid_cli_dry_run_and_status(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert main(["grid", "run", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "4 cells" in capsys.readouterr().out
    assert main(["grid", "run", str(spec), "--out", str(tmp_path / "o"), "--workers", "1", "-q"]) == 0
    assert main(["grid", "status", str(tmp_path / "o")]) == 0
    assert "done: 4" in capsys.readouterr().out
    assert main(["grid", "status", str(tmp_path / "nowhere")]) == 2
