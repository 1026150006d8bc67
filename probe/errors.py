"""The one family of errors ``probe`` raises for bad input.

Every message is a single line that names the file, key or value at fault. The CLI prints it
without a traceback and exits with status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base class: bad input that the user can fix."""


class ConfigError(ProbeError, ValueError):
    """An invalid configuration key or value (study spec, train config, CLI option)."""


class DataError(ProbeError, ValueError):
    """Unreadable, missing or unusable data (images, folders, degradation parameters)."""


class CheckpointError(ProbeError):
    """A missing, corrupt, truncated, foreign or mismatched checkpoint."""


class TrainingError(ProbeError):
    """A training run that cannot go on (non-finite loss, ...). The run directory records it."""


class StoreError(ProbeError):
    """An unreadable result store or a request for something it does not hold."""


def one_line(text: object) -> str:
    """Collapse a message to one line (errors are printed as one line by the CLI)."""
    return " ".join(str(text).split())
