"""Interruptions of a writer: SIGTERM as an exception (so finished results get committed), and the one line
that says what was kept.

``kill``, ``docker stop``, systemd and schedulers send SIGTERM; by default it ends Python at once, before an
incremental transaction (``ResultStore.transaction(keep_on_error=True)``) can commit its finished results.
:func:`sigterm_raises` turns it into :class:`Terminated` (a ``KeyboardInterrupt``) for the duration, unless
someone installed a SIGTERM handler of their own (then that one is left alone)::

    with sigterm_raises():
        with store.transaction(keep_on_error=True):
            ...   # SIGTERM → Terminated → pending results committed → exception goes on
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM received (raised by the handler of :func:`sigterm_raises`)."""


def _raise(signum: int, _frame: Any) -> None:
    raise Terminated(f"terminated ({signal.Signals(signum).name})")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; an existing handler is kept)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
            signal.SIG_DFL, None):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_message(exc: BaseException, store: Any, summary: dict[str, Any]) -> str:
    """One line: what interrupted the run, what is committed and how to continue."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    return (f"{what}: {store.committed} result(s) of this run committed to {store.path} "
            f"({summary.get('skipped', 0)} were already stored); rerun the same command to continue")
