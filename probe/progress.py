"""Progress bars: tqdm when stderr is a terminal, silent otherwise or when asked to be quiet."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) every progress bar of this process (the CLI's ``--quiet``)."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET or os.environ.get("PROBE_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             leave: bool = False, enabled: bool | None = None, **kwargs: Any):
    """A tqdm bar that is disabled when quiet or when stderr is not a TTY."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = not is_quiet() and sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=not enabled, dynamic_ncols=True,
                **kwargs)
