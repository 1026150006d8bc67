"""probe.locks: flock, the exclusive-create fallback for file systems without flock, stale-lock recovery."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from probe.errors import ConfigError, StoreError
from probe.locks import FileLock, holder_alive, holder_text

ROOT = Path(__file__).resolve().parents[1]

COUNTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from probe.locks import FileLock
    lock_path, counter, n, mode = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    for _ in range(n):
        with FileLock(lock_path, timeout=60, mode=mode):
            value = int(counter.read_text())
            time.sleep(0.002)                  # widen the race window: an unsafe lock loses increments
            counter.write_text(str(value + 1))
""")

HOLDER = textwrap.dedent("""
    import sys, time
    from probe.locks import FileLock
    lock = FileLock(sys.argv[1], mode=sys.argv[2]).acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}


def _no_flock(monkeypatch, code: int = errno.ENOLCK) -> None:
    def flock(fd, op):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_processes_exclude_each_other(tmp_path, mode):
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, str(tmp_path / "x.lock"), str(counter), "25", mode],
                              env=_env(), stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert int(counter.read_text()) == 75  # no lost update
    assert not (tmp_path / "x.lock.held").exists()  # released
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".part"]


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_unsupported_flock_falls_back_to_a_lock_file(tmp_path, monkeypatch, code):
    _no_flock(monkeypatch, code)
    lock = FileLock(tmp_path / "x.lock", timeout=0.1, mode="auto").acquire()
    try:
        assert lock.used == "file"
        assert (tmp_path / "x.lock.held").read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]
        with pytest.raises(StoreError, match="x.lock.held") as info:  # a second taker waits, then one line
            FileLock(tmp_path / "x.lock", timeout=0.1, mode="auto").acquire()
        assert "\n" not in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    finally:
        lock.release()
    assert not (tmp_path / "x.lock.held").exists()


def test_flock_only_mode_refuses_in_one_line(tmp_path, monkeypatch):
    _no_flock(monkeypatch)
    with pytest.raises(StoreError, match="PROBE_LOCK=file") as info:
        FileLock(tmp_path / "x.lock", mode="flock").acquire()
    assert str(tmp_path / "x.lock") in str(info.value) and "\n" not in str(info.value)


def test_lock_mode_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_LOCK", "file")
    with FileLock(tmp_path / "x.lock") as lock:
        assert lock.used == "file" and (tmp_path / "x.lock.held").exists()
    monkeypatch.setenv("PROBE_LOCK", "nfs")
    with pytest.raises(ConfigError, match="PROBE_LOCK"):
        FileLock(tmp_path / "x.lock")


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_a_killed_holders_lock_is_recognised_as_stale(tmp_path, mode):
    lock_path = tmp_path / "x.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path), mode], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        with pytest.raises(StoreError):  # held by a live process
            FileLock(lock_path, timeout=0.2, mode=mode).acquire()
        os.kill(proc.pid, signal.SIGKILL)  # what the OOM killer does
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    t0 = time.monotonic()
    with FileLock(lock_path, timeout=5, mode=mode) as lock:
        assert lock.used == mode
    assert time.monotonic() - t0 < 2


def test_stale_lock_file_variants(tmp_path):
    held = tmp_path / "x.lock.held"
    host, pid, start = holder_text().split()
    assert holder_alive(holder_text()) is True
    assert holder_alive(f"{host} {pid} {int(start) + 1}") is False   # same pid, other process (pid reuse)
    assert holder_alive(f"{host} 999999999") is False                 # no such process
    assert holder_alive(f"elsewhere.example {pid}") is None           # cannot tell for another host
    held.write_text(f"{host} {pid} {int(start) + 1}")
    with FileLock(tmp_path / "x.lock", timeout=1, mode="file"):
        assert held.read_text() == holder_text()
    held.write_text("")  # a writer killed between create and write, long ago
    os.utime(held, (time.time() - 3600, time.time() - 3600))
    with FileLock(tmp_path / "x.lock", timeout=1, mode="file"):
        pass


def test_lock_of_another_host_names_the_way_out(tmp_path):
    held = tmp_path / "x.lock.held"
    held.write_text("node042 1234 99")
    with pytest.raises(StoreError) as info:
        FileLock(tmp_path / "x.lock", timeout=0.1, mode="file", what="results store r.h5").acquire()
    msg = str(info.value)
    assert "\n" not in msg and "pid 1234 on node042" in msg and f"delete {held}" in msg
    assert held.read_text() == "node042 1234 99"  # never broken from here


def test_store_commits_without_flock(tmp_path, monkeypatch):
    import numpy as np
    import xarray as xr

    from probe.probes.base import ProbeResult
    from probe.store import ResultStore, list_models

    _no_flock(monkeypatch)
    result = ProbeResult(arrays={"a": xr.DataArray(np.arange(3.0), dims=("x",))})
    result.add_metric("id", "psnr", 30.0)
    store = ResultStore(tmp_path / "results.h5", lock_timeout=1)
    store.write("m0", {}, "generalization", {}, result)
    with store.transaction():
        assert not (tmp_path / "results.h5.lock.held").exists()  # the lock is taken at the first write
        store.write("m1", {}, "generalization", {}, result)
        assert (tmp_path / "results.h5.lock.held").exists()
    assert list_models(tmp_path / "results.h5") == ["m0", "m1"]
    assert not (tmp_path / "results.h5.lock.held").exists()


@pytest.mark.slow  # a measuring subprocess: interpreter, torch and probe imported afresh
def test_cli_measure_on_a_file_system_without_flock(tmp_path, trained_run):
    """pub_16: flock fails with ENOLCK in the measuring process → the result is stored, no traceback."""
    run = trained_run()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import errno, fcntl\n"
        "def _flock(fd, op):\n    raise OSError(errno.ENOLCK, 'No locks available')\n"
        "fcntl.flock = _flock\n")
    env = _env()
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    out = tmp_path / "rep" / "results.h5"
    m = subprocess.run([sys.executable, "-m", "probe.cli", "--quiet", "measure", str(run),
                        "--probes", "generalization", "--out", str(out)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert m.returncode == 0 and "Traceback" not in m.stderr, m.stderr
    from probe.store import list_models

    assert len(list_models(out)) == 1
