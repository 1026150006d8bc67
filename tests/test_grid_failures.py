"""Grid workers killed from outside, Dask retries, unreachable schedulers, concurrent grid runs (issue 13 kind 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from probe.cli import main
from probe.errors import ConfigError
from probe.grid.executors import death_cause
from probe.grid.runner import grid_status, run_grid

ROOT = Path(__file__).resolve().parents[1]

STUDY = """[study]
name = "killgrid"
probes = ["generalization"]
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
checkpoint_every = 5
val_every = {iterations}
[base.eval]
n_images = 2
[base.eval.splits.id]
type = "rain"
preset = "small"
[axes]
n_backgrounds = {axis}
"""


def write_study(tmp_path: Path, iterations: int, axis: str = "[1, 2, 3]") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(iterations=iterations, axis=axis))
    return path


def running_owners(out: Path) -> dict[str, int]:
    found = {}
    for rj in out.glob("*/run.json"):
        try:
            rec = json.loads(rj.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "running" and (rec.get("owner") or {}).get("pid"):
            found[rj.parent.name] = rec["owner"]["pid"]
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_death_cause_names_the_signal():
    assert death_cause(-signal.SIGKILL).startswith("worker process killed by SIGKILL (out of memory")
    assert death_cause(-signal.SIGSEGV) == "worker process killed by SIGSEGV"
    assert "exit status 3" in death_cause(3)


def test_killed_local_worker_is_recorded_the_rest_go_on_and_rerun_resumes(tmp_path):
    """pub_18: SIGKILL of one of two workers → that cell failed (cause), the others done, rerun resumes it."""
    spec = write_study(tmp_path, iterations=80)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "probe.cli", "--quiet", "grid", "run", str(spec), "--out",
                             str(out), "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def two_running_one_checkpointed():
            owners = running_owners(out)
            saved = [c for c in owners if (out / c / "state.pt").exists()]
            return (saved[0], owners) if len(owners) >= 2 and saved else None

        victim, owners = wait_for(two_running_one_checkpointed, 180, "two cells training")
        os.kill(owners[victim], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    assert f"failed {victim}: worker process killed by SIGKILL" in stdout
    status = grid_status(out).set_index("cell")
    assert status.loc[victim, "status"] == "failed" and "SIGKILL" in status.loc[victim, "error"]
    assert set(status.drop(index=victim)["status"]) == {"done"}  # the survivor and the pending cell finished
    record = json.loads((out / victim / "run.json").read_text())
    assert record["cause"] == "killed" and record["exitcode"] == -signal.SIGKILL
    assert (out / victim / "state.pt").exists()  # what the killed worker had saved is kept

    again = run_grid(spec, out, workers=2)
    assert again["done"] == 3 and again["failed"] == 0 and list(again["outcomes"]) == [victim]
    record = json.loads((out / victim / "run.json").read_text())
    assert record["status"] == "done" and record["resumed_from"] > 0  # resumed, not restarted


def test_unreachable_scheduler_is_one_line_exit_2_quickly(tmp_path, capsys):
    spec = write_study(tmp_path, iterations=2, axis="[1]")
    t0 = time.monotonic()
    code = main(["grid", "run", str(spec), "--out", str(tmp_path / "o"), "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2"])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "tcp://127.0.0.1:9" in err, err
    assert elapsed < 15
    with pytest.raises(ConfigError, match="no-such-host.invalid:8786"):
        run_grid(spec, tmp_path / "o", executor="dask", scheduler="tcp://no-such-host.invalid:8786",
                 connect_timeout=2)


@pytest.mark.parametrize("bad", [{"retries": -1}, {"retries": 1.5}, {"workers": 0}, {"executor": "slurm"}])
def test_bad_executor_options_are_config_errors(tmp_path, bad):
    spec = write_study(tmp_path, iterations=2, axis="[1]")
    with pytest.raises(ConfigError, match=next(iter(bad))):
        run_grid(spec, tmp_path / "o", **bad)


@pytest.mark.parametrize("retries", [0, 1])
def test_dask_worker_death_is_retried_a_bounded_number_of_times(tmp_path, retries):
    spec = write_study(tmp_path, iterations=60, axis="[1, 2]")
    out = tmp_path / "out"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run_grid(spec, out, executor="dask", workers=2,
                                                                    retries=retries)))
    thread.start()
    try:
        owners = wait_for(lambda: (o := running_owners(out)) and len(o) >= 1 and o, 180, "a cell training")
        victim, pid = sorted(owners.items())[0]
        os.kill(pid, signal.SIGKILL)  # the Dask worker process running the cell
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive()
    record = json.loads((out / victim / "run.json").read_text())
    if retries == 0:
        assert result["failed"] == 1 and record["status"] == "failed" and record["cause"] == "killed"
        assert "KilledWorker" in record["error"]
        assert result["done"] == 1
    else:
        assert result["failed"] == 0 and result["done"] == 2 and record["status"] == "done"


def test_a_cell_trained_by_another_live_process_is_left_alone(tmp_path):
    from probe.grid.runner import CELL_LOCK, plan
    from probe.grid.spec import StudySpec
    from probe.locks import FileLock

    spec = write_study(tmp_path, iterations=2, axis="[1, 2]")
    out = tmp_path / "out"
    first = plan(StudySpec.from_toml(spec), out)[0][2]
    with FileLock(first / CELL_LOCK, timeout=0):  # as if a second `probe grid run` trains it right now
        summary = run_grid(spec, out, workers=1)
    assert summary["busy"] == 1 and summary["done"] == 1 and summary["failed"] == 0
    assert "grid cell" in summary["outcomes"][first.name]["error"]
    assert run_grid(spec, out, workers=1)["done"] == 2
