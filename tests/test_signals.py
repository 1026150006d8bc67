"""SIGTERM / SIGHUP handled like Ctrl-C in every command; no worker outlives the grid; a closed stdout ends
quietly (issue 25 kind 1, and kind 6's `--dry-run | head`). Real subprocesses and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import study_toml, tiny_study
from test_grid_failures import running_owners, wait_for

from probe.grid.executors import run_in_processes
from probe.grid.runner import CELL_LOCK, grid_status
from probe.locks import FileLock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}



def alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not count)."""
    from probe.locks import _pid_state

    return _pid_state(pid) not in ("", "Z")


def study(axis: list[int], checkpoint_every: int) -> dict:
    """The suite's tiny study, training (nearly) forever on smooth backgrounds of 16 px."""
    return tiny_study({"study.name": "sigs", "base.data": {"background": "smooth", "patch": 16},
                       "base.train": {"iterations": 100000, "batch": 2, "checkpoint_every": checkpoint_every},
                       "base.eval.splits.ood": None, "base.eval.n_images": 2, "axes": {"n_backgrounds": axis}})


def default_signals() -> None:
    """In the child: the signals under test at their defaults. A suite run under `nohup` or as a background
    job inherits SIGHUP / SIGINT ignored, and probe keeps an ignored signal ignored (as it should)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "probe.cli", "--quiet", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_signals)


def finish(proc: subprocess.Popen, timeout: float = 90) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_train_stops_at_a_step_with_its_state_saved(tmp_path, signum, code):
    """`probe train` under SIGTERM/SIGINT/SIGHUP: one line, 128 + signal, the run recorded interrupted at the
    step where it stopped, its state saved at that very step (no periodic checkpoints here), no traceback."""
    (tmp_path / "run.toml").write_text(study_toml(study([1], checkpoint_every=0)["base"]))
    proc = start(["train", "run.toml", "--out", "run"], tmp_path)
    record_path = tmp_path / "run" / "run.json"
    wait_for(lambda: record_path.exists() and json.loads(record_path.read_text())["status"] == "running", 120,
             "training to start")
    time.sleep(1.0)
    os.kill(proc.pid, signum)  # the main process only, as kill / docker stop / systemd do
    _, err = finish(proc)
    assert proc.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("probe: interrupted (") and signal.Signals(signum).name in err
    record = json.loads(record_path.read_text())
    assert record["status"] == "interrupted" and record["interrupted_step"] > 0
    import torch

    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["step"] == record["interrupted_step"]  # saved at the stop, not at an older checkpoint
    assert f"resumes from step {state['step']}" in record["error"]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "batched", "dask"])
def test_sigterm_stops_grid_workers_releases_locks_and_records_cells(tmp_path, executor):
    """interrupt_01: SIGTERM to `probe grid run` only → exit 143 with one line, no worker left, every started
    cell recorded interrupted and unlocked (a rerun would not find it busy)."""
    (tmp_path / "study.toml").write_text(study_toml(study([1, 2, 3], checkpoint_every=50)))
    out = tmp_path / "out"
    workers = [] if executor == "batched" else ["--workers", "2"]  # batched: one group of three cells, in-process
    proc = start(["grid", "run", "study.toml", "--out", "out", "--executor", executor, *workers], tmp_path)
    want = 3 if executor == "batched" else 2
    owners = wait_for(lambda: (o := running_owners(out)) and len(o) >= want and o, 180, "cells training")
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = finish(proc)
    ours = [line for line in err.splitlines() if line.startswith("probe: interrupted (SIGTERM)")]
    assert proc.returncode == 143 and len(ours) == 1, err
    if executor != "dask":  # Dask's own workers log their shutdown (warnings, cancelled tasks) on stderr too
        assert err.strip() == ours[0], err
    wait_for(lambda: not any(alive(p) for p in owners.values()), 20, "workers to stop")
    status = grid_status(out).set_index("cell")
    for cell in owners:
        assert status.loc[cell, "status"] == "interrupted", status
        FileLock(out / cell / CELL_LOCK, timeout=0).acquire().release()  # not busy


@pytest.mark.slow
def test_workers_stop_by_themselves_when_the_grid_is_killed(tmp_path):
    """SIGKILL of the main process cannot be handled; its workers notice the parent's death and stop."""
    (tmp_path / "study.toml").write_text(study_toml(study([1, 2], checkpoint_every=50)))
    out = tmp_path / "out"
    proc = start(["grid", "run", "study.toml", "--out", "out", "--workers", "2"], tmp_path)
    owners = wait_for(lambda: (o := running_owners(out)) and len(o) >= 2 and o, 180, "two cells training")
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)
    wait_for(lambda: not any(alive(p) for p in owners.values()), 20, "orphaned workers to stop")
    assert set(grid_status(out)["status"]) == {"interrupted"}


def test_process_runner_reports_deaths_and_stops_what_runs_when_closed():
    """run_in_processes: a process that dies without reporting yields None with its exit status; closing the
    generator early stops the processes still running (no orphans)."""
    tasks = [("quits", os._exit, (3,)), ("sleeps", time.sleep, (120,))]
    gen = run_in_processes(tasks, 2)
    key, result, exitcode, _ = next(gen)
    assert (key, result, exitcode) == ("quits", None, 3)
    t0 = time.monotonic()
    gen.close()
    assert time.monotonic() - t0 < 15
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "probe-sleeps"]


@pytest.mark.parametrize("command, target", [
    (["train", "x.toml"], "probe.train.cli:run_cli"),
    (["measure", "x"], "probe.measure:run_cli"),
    (["report", "x"], "probe.report.cli:run_cli"),
    (["demo"], "probe.demo:run_cli"),
    (["grid", "status", "x"], "probe.grid.cli:status_cli"),
])
def test_every_command_ends_on_sigterm_with_one_line_and_143(command, target, monkeypatch, capsys):
    """The CLI turns a real SIGTERM into one line and exit 143 whatever the command is doing."""
    module, _, attr = target.partition(":")
    import importlib

    def busy(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler, not reached
        raise AssertionError("not interrupted")

    monkeypatch.setattr(importlib.import_module(module), attr, busy)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        from probe.cli import main

        t0 = time.monotonic()
        assert main(command) == 143
        assert time.monotonic() - t0 < 10
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["probe: interrupted (SIGTERM); finished results are kept, a rerun resumes the rest"]


@pytest.mark.slow
def test_closed_stdout_ends_quietly(tmp_path):
    """`probe grid run --dry-run | head -1`: no BrokenPipeError traceback, the status of a SIGPIPE'd process."""
    (tmp_path / "study.toml").write_text(study_toml(study(list(range(1, 3001)), checkpoint_every=0)))
    proc = subprocess.Popen([sys.executable, "-m", "probe.cli", "grid", "run", "study.toml", "--out", "o",
                             "--dry-run"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"study sigs: 3000 cells")
    assert err == "" and proc.returncode == 141


SWALLOWED = """
import sys, time, weakref
from probe.interrupt import Terminated, exit_code, install

install()


class Thing:
    pass


def slow_callback(ref):  # Python ignores an exception raised in here ("Exception ignored in ...")
    print("in-callback", flush=True)
    time.sleep(1)


try:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        thing = Thing()
        keep = weakref.ref(thing, slow_callback)
        del thing
        time.sleep(0.5)  # ordinary work
    print("still running", flush=True)
except KeyboardInterrupt as exc:
    print("stopped", type(exc).__name__, flush=True)
    sys.exit(exit_code(exc))
"""


def test_a_signal_arriving_where_python_swallows_exceptions_still_stops_the_command(tmp_path):
    """SIGTERM delivered inside a weakref callback (where the raised Terminated is only printed as ignored)
    still ends the command at once, with 143 — not after the second signal."""
    script = tmp_path / "swallow.py"
    script.write_text(SWALLOWED)
    proc = subprocess.Popen([sys.executable, str(script)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "in-callback"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 143, (out, err)
    assert "stopped Terminated" in out and "still running" not in out
    assert time.monotonic() - start < 5
