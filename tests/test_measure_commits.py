"""Commits that lose nothing (issue 22 item 4): `probe measure` commits after every model (and every few
seconds), each commit writes only what it adds, and a measure interrupted by SIGINT or SIGTERM, killed with
SIGKILL or stopped by a full disk keeps every finished result, leaves no temporary file, says in one line what
happened, and a rerun continues where it stopped."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import study_toml, tiny_study

from probe.errors import StoreError
from probe.grid.runner import run_grid
from probe.measure import measure
from probe.store import list_entries, list_models, read_metrics

ROOT = Path(__file__).resolve().parent.parent
N_MODELS = 6
SPEC = study_toml(tiny_study({  # the shared tiny study (conftest), shrunk: six cells, one split, one probe
    "study": {"name": "six", "probes": ["generalization"]}, "base.data": {"patch": 16},
    "base.train": {"iterations": 1, "batch": 2, "log_every": 1, "val_every": 0},
    "base.eval": {"n_images": 2, "splits": {"id": {"type": "rain", "preset": "small"}}},
    "axes": {"n_backgrounds": [1, 2, 3], "seed": [0, 1]}}))

# `probe measure` in a subprocess, each model's probe slowed down so that a signal lands mid-measure
SLOW_MEASURE = textwrap.dedent("""
    import sys, time
    from probe.probes.generalization import Generalization
    real = Generalization.run
    def slow(self, model, data):
        time.sleep(float(sys.argv[1]))
        return real(self, model, data)
    Generalization.run = slow
    from probe.cli import main
    sys.exit(main(["--quiet", "measure", sys.argv[2], "--out", sys.argv[3]]))
""")


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("six")
    (root / "six.toml").write_text(SPEC)
    summary = run_grid(root / "six.toml", root / "models", executor="batched", show_progress=False)
    assert summary["done"] == N_MODELS and summary["failed"] == 0
    return root / "models"


def _commits(monkeypatch) -> list[int]:
    """Sizes (bytes) of every file the store writes (commit segments and merges)."""
    import probe.store.merge as merge
    import probe.store.writer as writer

    sizes: list[int] = []
    real = writer.write_bytes_atomic

    def counting(target, data, *args, **kwargs):
        sizes.append(len(data))
        return real(target, data, *args, **kwargs)

    monkeypatch.setattr(writer, "write_bytes_atomic", counting)  # commits
    monkeypatch.setattr(merge, "write_bytes_atomic", counting)  # merges
    return sizes


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


ROWS = 5  # metric rows of one model's `generalization` result (one split)


def _check_complete(store: Path) -> list[str]:
    """Every stored model has all its metric rows (no half-written result is visible)."""
    df = read_metrics(store)
    models = list_models(store)
    assert set(df["model_id"]) == set(models)
    counts = df.groupby("model_id").size()
    assert (counts == ROWS).all(), counts
    return models


def test_measure_commits_each_model_and_each_commit_is_small(grid, tmp_path, monkeypatch):
    store = tmp_path / "rep" / "results.h5"
    sizes = _commits(monkeypatch)
    summary = measure(grid, out=store, show_progress=False)
    assert summary["runs"] == N_MODELS and summary["computed"] == N_MODELS and not summary["failed"]
    commits = len(sizes)  # per-model commits plus merges
    assert commits >= N_MODELS
    entries = list_entries(store)
    assert entries["model_id"].nunique() == N_MODELS and entries["verified"].all()
    _check_complete(store)
    # O(what it adds): a commit of one model is as small as the first one, however big the store has grown
    first_segment = sizes[1]
    singles = [s for s in sizes[1:] if s <= 2 * first_segment]
    assert len(singles) >= N_MODELS - 1
    again = measure(grid, out=store, show_progress=False)
    assert again["computed"] == 0 and again["skipped"] == N_MODELS
    assert len(sizes) == commits  # nothing new: nothing written
    assert not _temporaries(store.parent)


def _default_signals() -> None:
    """The child's signals at their defaults (a suite run as a background job inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(grid: Path, store: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SLOW_MEASURE, str(delay), str(grid), str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=_default_signals)


def _wait_for_models(store: Path, proc: subprocess.Popen, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"measure ended early: {proc.communicate()}"
        try:
            if store.is_file() and len(list_models(store)) >= at_least:
                return
        except StoreError:
            pass
        time.sleep(0.05)
    raise AssertionError("no model committed in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, says", [(signal.SIGINT, 130, "interrupted (SIGINT)"),
                                             (signal.SIGTERM, 143, "interrupted (SIGTERM)"),
                                             (signal.SIGKILL, -9, None)])
def test_a_measure_stopped_by_a_signal_keeps_what_it_finished(grid, tmp_path, sig, code, says):
    store = tmp_path / "rep" / "results.h5"
    proc = _start(grid, store, delay=0.6)
    _wait_for_models(store, proc, 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    if says is not None:  # one line: what happened, what is kept, how to go on
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"probe: {says}: ") and "committed to" in lines[0] and "rerun" in lines[0]
    kept = _check_complete(store)
    assert 2 <= len(kept) < N_MODELS
    assert not _temporaries(store.parent)
    rerun = measure(grid, out=store, show_progress=False)  # continues where it stopped
    assert rerun["skipped"] == len(kept) and rerun["computed"] == N_MODELS - len(kept)
    assert len(_check_complete(store)) == N_MODELS


def test_a_full_disk_keeps_the_finished_models(grid, tmp_path, monkeypatch):
    import probe.store.segments as segments

    store = tmp_path / "rep" / "results.h5"
    real, calls = segments._write_all, []

    def fills_up(fd, data):
        calls.append(len(data))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(segments, "_write_all", fills_up)
    with pytest.raises(StoreError) as info:
        measure(grid, out=store, show_progress=False)
    message = str(info.value)
    assert "\n" not in message and "disk is full" in message and str(store) in message and "rerun" in message
    kept = _check_complete(store)
    assert 1 <= len(kept) < N_MODELS
    assert not _temporaries(store.parent)
    monkeypatch.setattr(segments, "_write_all", real)  # space freed: the rerun continues
    rerun = measure(grid, out=store, show_progress=False)
    assert rerun["skipped"] == len(kept) and rerun["computed"] == N_MODELS - len(kept)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_really_full_disk_via_cli(grid, tmp_path):
    """A real full file system (a 64 KiB tmpfs, root only): one line, exit 2, finished models kept."""
    mount = tmp_path / "tiny"
    if not _mount_tmpfs(mount, "64k"):
        pytest.skip("needs root and mount rights for a tiny tmpfs")
    try:
        store = mount / "results.h5"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        r = subprocess.run([sys.executable, "-m", "probe.cli", "--quiet", "measure", str(grid), "--out", str(store)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "disk is full" in lines[0], r.stderr
        kept = _check_complete(store)
        assert 1 <= len(kept) < N_MODELS and not _temporaries(mount)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
