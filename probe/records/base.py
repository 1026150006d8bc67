"""What every record shares: one error type, reading and writing JSON with a schema version.

A record file is a JSON object with a ``schema`` key (an int). A file without one was written before records
had versions and is read as version 0 (every field it lacks takes its default). A file whose ``schema`` is
newer than this probe knows is refused in one line that says to upgrade probe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError, DataError


class RecordError(CheckpointError, DataError):
    """A missing, unreadable, corrupt or too-new record file (``run.json``, ``study.json``), or a bad field.

    A :class:`~probe.errors.CheckpointError` (a run directory is a checkpoint) and a
    :class:`~probe.errors.DataError`, so callers that caught either keep working."""


def read_json(path: Path, what: str, missing_hint: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RecordError` naming the file for a missing, unreadable, non-UTF-8,
    corrupt or non-object file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RecordError(f"{path}: no {what}{missing_hint}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: corrupt {what} ({exc})") from exc
    if not isinstance(raw, dict):
        raise RecordError(f"{path}: {what} must hold a JSON object, got {type(raw).__name__}")
    return raw


def check_schema(raw: dict[str, Any], known: int, where: str, what: str) -> int:
    """The record's schema version (0 when absent); :class:`RecordError` for a non-int or a newer one."""
    version = raw.get("schema", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RecordError(f"{where}: {what} 'schema' must be a non-negative int, got {version!r}")
    if version > known:
        raise RecordError(f"{where}: {what} schema {version} is newer than this probe reads ({known}); "
                          "upgrade probe (pip install -U probe) to read it")
    return version


def table(raw: dict[str, Any], key: str, where: str, what: str) -> dict[str, Any]:
    """``raw[key]`` as a dict (``{}`` when absent or null); :class:`RecordError` naming the key otherwise."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{where}: {what} key {key!r} must be a table, got {type(value).__name__}")
    return value
