"""Grid executors: run cells in worker processes; a worker killed from outside costs only its own cell.

* ``local``: one spawned process per cell, at most ``workers`` at a time. A process that dies without
  reporting (SIGKILL from the OOM killer, a SLURM memory/time limit, preemption, a segfault) has its cell
  recorded ``failed`` in ``run.json`` with the cause (``"killed"``, the signal) — the other cells go on, and a
  rerun resumes it from its last ``state.pt``.
* ``dask``: a ``LocalCluster`` (or ``scheduler=ADDRESS``). A cell whose worker dies is rescheduled by Dask at
  most ``retries`` times (``distributed.scheduler.allowed-failures``; for a remote scheduler its own setting),
  then recorded ``failed`` like above. An unreachable scheduler is one :class:`~probe.errors.ConfigError`
  line naming the address after ``connect_timeout`` seconds.

Ctrl-C, SIGTERM and SIGHUP stop every executor the same way (:mod:`probe.interrupt`): the running workers get
SIGTERM (SIGKILL after :data:`STOP_GRACE_S`), each saves its state at the end of its step and records its cell
``interrupted``, its cell lock is released, and a rerun resumes it. A worker whose parent dies however it dies
(even SIGKILL) stops by itself, so no worker outlives the command. The Dask executor closes its client and
local cluster (its workers with it); a cell already running on a remote scheduler's worker finishes there
(it holds its cell lock meanwhile, so a rerun reports it ``busy``).

Each executor yields one outcome dict per cell: ``{"path", "status", "seconds", "error"?, "cause"?}``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, one_line
from probe.train.rundir import RunDir

Todo = list[tuple[str, dict[str, Any], Path]]


def default_workers(threads_per_worker: int = 1) -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, threads_per_worker))


def death_cause(exitcode: int | None) -> str:
    """One line saying how a worker process ended without reporting its cell."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = (" (out of memory, a job memory/time limit or preemption?)" if -exitcode == signal.SIGKILL
                else "")
        return f"worker process killed by {name}{hint}"
    return f"worker process ended with exit status {exitcode} without reporting a result"


def record_lost_cell(path: str | Path, error: str, cause: str = "killed", seconds: float = 0.0,
                     **extra: Any) -> dict[str, Any]:
    """Mark the cell at ``path`` failed in its ``run.json`` (keeping what is there); return its outcome."""
    run = RunDir(path)
    error = one_line(error)
    try:
        record = run.read() if run.exists() else {}
    except Exception:
        record = {}
    record.update(status="failed", error=error, cause=cause, **extra)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write(record)
    except OSError:
        pass
    return {"path": str(path), "status": "failed", "error": error, "cause": cause, "seconds": seconds}


# ------------------------------------------------------------------------------------------------- local
class _Raised:
    """What a worker sends back when its task raised (the task's own failures are outcomes, not this)."""

    def __init__(self, message: str):
        self.message = message


def _child(conn: Any, fn: Callable[..., Any], args: tuple) -> None:
    """Body of a worker process: SIGTERM/SIGHUP like Ctrl-C, stop when the parent dies, send ``fn(*args)``."""
    import sys

    from probe.interrupt import exit_code, worker_setup

    worker_setup()
    try:
        try:
            result: Any = fn(*args)
        except KeyboardInterrupt as exc:  # stopped (the grid was interrupted): the task recorded it; no traceback
            sys.exit(exit_code(exc))
        except Exception as exc:  # the task records its own failures; this is a last resort
            result = _Raised(one_line(f"{type(exc).__name__}: {exc}"))
        conn.send(result)
        conn.close()
    except KeyboardInterrupt as exc:  # a signal while sending
        sys.exit(exit_code(exc))


def run_in_processes(tasks: Iterable[tuple[Any, Callable[..., Any], tuple]], workers: int
                     ) -> Iterator[tuple[Any, Any, int | None, float]]:
    """Run each ``(key, fn, args)`` as ``fn(*args)`` in its own spawned process, at most ``workers`` at once.

    Yields ``(key, result, exitcode, seconds)`` as each process ends, in completion order; ``result`` is
    ``None`` when the process died without reporting (SIGKILL by the OOM killer, a job limit, a segfault) and a
    :class:`_Raised` when ``fn`` raised. Linear in the number of tasks (a deque, one ``wait`` per ending).

    Interrupted (Ctrl-C, SIGTERM as :class:`probe.interrupt.Terminated`, an exception in the consumer, or the
    generator closed): every running process gets SIGTERM, then SIGKILL after ``STOP_GRACE_S``; none outlives
    this call. Each worker also watches this process and stops if it dies (:func:`probe.interrupt.worker_setup`).
    """
    import multiprocessing as mp
    from collections import deque
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # a forked child of a process that already used torch threads can deadlock
    queue = deque(tasks)
    running: dict[Any, tuple[Any, Any, Any, float]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                key, fn, args = queue.popleft()
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, name=f"probe-{key}", args=(writer, fn, args))
                proc.start()
                writer.close()
                running[proc.sentinel] = (proc, reader, key, time.perf_counter())
            for sentinel in wait(list(running)):
                proc, reader, key, t0 = running.pop(sentinel)
                result = None
                try:
                    if reader.poll():
                        result = reader.recv()
                except (EOFError, OSError):
                    result = None
                finally:
                    reader.close()
                proc.join()
                yield key, result, proc.exitcode, time.perf_counter() - t0
    finally:  # interrupted: stop the workers we started; their cells are recorded interrupted, a rerun resumes
        stop_processes([(proc, reader) for proc, reader, _, _ in running.values()])


STOP_GRACE_S = 10.0


def stop_processes(procs: list[tuple[Any, Any]]) -> None:
    """SIGTERM every live process, wait up to :data:`STOP_GRACE_S` for all together, SIGKILL the rest."""
    for proc, _ in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc, reader in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
        reader.close()


def run_local(todo: Todo, workers: int | None, scheduler: str | None, device: str | None, threads: int,
              verbose: bool, gpus: list[int] | None = None, **_: Any) -> Iterator[dict[str, Any]]:
    """Cells in up to ``workers`` spawned processes (in this process when one worker suffices).

    ``gpus`` (validated CUDA indices): cells go round-robin to ``cuda:<i>``, one worker per GPU by default.
    """
    from probe.grid.runner import run_cell

    if not todo:
        return
    devices = [f"cuda:{g}" for g in gpus] if gpus else [device]
    workers = min(len(todo), workers or (len(devices) if gpus else default_workers(threads)))
    if workers == 1:
        for _, config, path in todo:
            yield run_cell(config, str(path), devices[0], threads, verbose)
        return
    tasks = ((path, run_cell, (config, str(path), devices[i % len(devices)], threads, verbose))
             for i, (_, config, path) in enumerate(todo))
    for path, outcome, exitcode, seconds in run_in_processes(tasks, workers):
        if isinstance(outcome, _Raised):
            outcome = record_lost_cell(path, outcome.message, cause="error", seconds=seconds)
        elif outcome is None:
            outcome = record_lost_cell(path, death_cause(exitcode), seconds=seconds, exitcode=exitcode)
        yield outcome


# -------------------------------------------------------------------------------------------------- dask
def connect(scheduler: str, timeout: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``scheduler``; one ConfigError line if unreachable."""
    from dask.distributed import Client

    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ConfigError(f"--scheduler must be an address like tcp://HOST:8786, got {scheduler!r}")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConfigError(one_line(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s ({exc}); check the address "
            f"(tcp://HOST:PORT) and that `dask scheduler` runs there, or drop --scheduler")) from None


def run_dask(todo: Todo, workers: int | None, scheduler: str | None, device: str | None, threads: int,
             verbose: bool, retries: int = 2, connect_timeout: float = 10.0, **_: Any) -> Iterator[dict[str, Any]]:
    """Cells as Dask tasks; a task whose worker died more than ``retries`` times is recorded failed."""
    try:
        import dask
        from dask.distributed import LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError("the dask executor needs `distributed` (pip install distributed)") from exc
    if not todo:
        return
    from probe.grid.runner import run_cell

    cluster = None
    if scheduler:
        client = connect(scheduler, connect_timeout)
    else:
        n = min(len(todo), workers or default_workers(threads))
        with dask.config.set({"distributed.scheduler.allowed-failures": int(retries)}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = connect(cluster.scheduler_address, connect_timeout)
    try:
        futures, paths = [], {}
        for cell_id, config, path in todo:
            future = client.submit(run_cell, config, str(path.resolve()), device, threads, verbose,
                                   key=f"probe-cell-{cell_id}-{time.time_ns()}", pure=False, retries=int(retries))
            futures.append(future)
            paths[future.key] = path
        t0 = time.perf_counter()
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # KilledWorker after the allowed failures, a lost scheduler, ...
                cause = "killed" if type(exc).__name__ == "KilledWorker" else "lost"
                yield record_lost_cell(paths[future.key], f"dask worker lost: {type(exc).__name__}: {exc}",
                                       cause=cause, seconds=time.perf_counter() - t0)
    finally:  # also on Ctrl-C / SIGTERM: closing the local cluster stops its workers (run_grid records the cells)
        client.close()
        if cluster is not None:
            cluster.close()

