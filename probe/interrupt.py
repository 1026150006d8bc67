"""Signals that end a command: SIGTERM and SIGHUP are handled like Ctrl-C, in every command and every worker.

``kill PID``, ``docker stop``, systemd and most batch schedulers send SIGTERM to the *main* process only; a
closed terminal sends SIGHUP. :func:`install` (called by the ``probe`` command first thing) turns them into
:class:`Terminated`, a :class:`KeyboardInterrupt`, so every ``finally`` and ``except KeyboardInterrupt``
that already cleans up after Ctrl-C — stopping grid workers, releasing cell locks, recording unfinished cells
``interrupted`` — also runs on SIGTERM. The CLI then prints one line and exits ``128 + signal`` (130 for
Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).

Worker processes call :func:`worker_setup`: the same handlers, plus a watcher thread that sends the worker
SIGTERM when its parent dies however it dies (even SIGKILL), so no training worker outlives the command that
started it. ::

    from probe.interrupt import Terminated, exit_code, install
    install()
    try:
        ...
    except KeyboardInterrupt as exc:
        sys.exit(exit_code(exc))          # 130, 143 or 129
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: Signals handled like Ctrl-C (SIGHUP where the platform has it).
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives one of :data:`SIGNALS`; ``signum`` names it."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _raise(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _redeliver(hook: Any) -> Any:
    """An ``sys.unraisablehook`` that gives a swallowed interruption back: Python *ignores* an exception raised
    where it cannot propagate (a weakref callback, ``__del__``: "Exception ignored in …"), so a signal that
    arrived there would leave the command running. The hook re-sends the signal to the process 50 ms later,
    from a thread (sent at once, its handler would run inside the hook and be swallowed again), until it lands
    in ordinary code and the command stops; every other unraisable exception goes to ``hook``."""

    def unraisable(args: Any) -> None:
        exc = getattr(args, "exc_value", None)
        if isinstance(exc, KeyboardInterrupt):
            signum = exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT)
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
            return
        hook(args)

    unraisable.probe_redeliver = True
    return unraisable


def install() -> bool:
    """Handle :data:`SIGNALS` by raising :class:`Terminated` (main thread only; False elsewhere), and give back
    an interruption Python would swallow (:func:`_redeliver`).

    A signal that was ignored when the process started (``nohup`` ignores SIGHUP) stays ignored."""
    import sys

    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        signal.signal(signum, _raise)
    if not getattr(sys.unraisablehook, "probe_redeliver", False):
        sys.unraisablehook = _redeliver(sys.unraisablehook)
    return True


def exit_code(exc: BaseException) -> int:
    """The conventional exit status of a command ended by ``exc``: ``128 + signal`` (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT))


def describe(exc: BaseException) -> str:
    """``"SIGTERM"``, ``"SIGHUP"`` or ``"SIGINT"`` (Ctrl-C) for an interruption."""
    return signal_name(exc.signum) if isinstance(exc, Terminated) else "SIGINT"


def worker_setup() -> None:
    """In a worker process: handle :data:`SIGNALS` like the CLI does and stop when the parent dies.

    The parent's death is seen through :func:`multiprocessing.parent_process`'s sentinel (a pipe that becomes
    readable when the parent exits, however it exits), which then sends this process SIGTERM; the worker
    unwinds through its ``finally`` blocks (its cell recorded ``interrupted``, its lock released)."""
    install()
    import multiprocessing

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        try:
            wait([sentinel])
        except (OSError, ValueError):
            return
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="probe-parent-watch", daemon=True).start()


class Deferred:
    """State of a :func:`deferred` block: ``signum`` of the first signal received inside it (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def interruption(self) -> KeyboardInterrupt:
        """The exception to raise once the work is at a safe point (:class:`Terminated` or KeyboardInterrupt)."""
        if self.signum in SIGNALS:
            return Terminated(int(self.signum))
        return KeyboardInterrupt()


@contextlib.contextmanager
def deferred() -> Iterator[Deferred]:
    """Within the block the first SIGINT/SIGTERM/SIGHUP is only remembered (the caller stops at its next safe
    point, e.g. the end of a training step, after saving its state); a second one raises at once. Outside the
    main thread (where Python delivers no signals) the block changes nothing. Handlers are restored on exit."""
    state = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    handled = [s for s in (signal.SIGINT, *SIGNALS) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.getsignal(s) for s in handled}

    def remember(signum: int, frame: Any) -> None:
        if state.signum is not None:  # asked twice: stop now
            raise state.interruption()
        state.signum = signum

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    for s in handled:
        signal.signal(s, remember)
    try:
        yield state
    except BaseException:
        restore()
        raise
    restore()
    if state.requested:  # the block ended before it looked: deliver the signal now, to the restored handler
        signal.raise_signal(int(state.signum))
