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

from probe.interrupt import Terminated


def _raise(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


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


def interrupted(exc: BaseException, store: Any, summary: dict[str, Any]) -> KeyboardInterrupt:
    """``exc`` again (same signal), with ``detail``: what is committed and how to continue, for the one line
    the CLI prints after ``probe: interrupted (SIGNAL)``."""
    again: KeyboardInterrupt = Terminated(exc.signum) if isinstance(exc, Terminated) else KeyboardInterrupt()
    again.detail = (f": {store.committed} result(s) of this run committed to {store.path} "  # type: ignore[attr-defined]
                    f"({summary.get('skipped', 0)} were already stored); rerun the same command to continue")
    return again
