"""Parameter checks shared by the representation probes (one-line ConfigErrors naming probe and key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probe.errors import ConfigError


def int_param(probe: str, key: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
    """``value`` as an int ≥ ``minimum`` (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or null" if allow_none else ""
        raise ConfigError(f"{probe}: {key!r} must be an integer >= {minimum}{extra}, got {value!r}")
    return value


def choice_param(probe: str, key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{probe}: {key!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def names_param(probe: str, key: str, value: Any) -> list[str] | None:
    """None, a string or a list of strings → None or a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{probe}: {key!r} must be null, a name or a non-empty list of names, got {value!r}")


def number_param(probe: str, key: str, value: Any, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{probe}: {key!r} must be a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{probe}: {key!r} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{probe}: {key!r} must be >= {minimum}, got {value!r}")
    return float(value)
