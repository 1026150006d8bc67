"""A run directory: ``model.safetensors`` + ``run.json`` + ``train.log`` (+ ``state.pt`` while unfinished).

``run.json`` is rewritten atomically at every change of state, so a killed run never looks finished:
``status`` is ``running`` (with the pid and host that own it), ``done`` or ``failed`` (with ``error``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError
from probe.fsutil import atomic_path
from probe.records import RUN_FILE, RunRecord

WEIGHTS = "model.safetensors"
RECORD = RUN_FILE
LOG = "train.log"
STATE = "state.pt"


class RunDir:
    """Paths and state of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def state_path(self) -> Path:
        return self.path / STATE

    def exists(self) -> bool:
        return self.record_path.is_file()

    def record(self) -> RunRecord:
        """The typed record (:class:`probe.records.RunRecord`); ``RecordError`` (a ``CheckpointError``) for a
        missing, corrupt or too-new ``run.json``."""
        return RunRecord.load(self.record_path)

    def read(self) -> dict[str, Any]:
        """The record as a plain dict (:meth:`RunRecord.to_dict`)."""
        return self.record().to_dict()

    def write(self, record: dict[str, Any] | RunRecord) -> None:
        """Write the record atomically, with its schema version and the resolved evaluation set."""
        if not isinstance(record, RunRecord):
            record = RunRecord.from_dict(record, where=str(self.record_path))
        record.dump(self.record_path)

    def update(self, **fields: Any) -> dict[str, Any]:
        record = self.read() if self.exists() else {}
        record.update(fields)
        self.write(record)
        return record

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")

    def save_state(self, state: dict[str, Any]) -> None:
        import torch

        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> dict[str, Any] | None:
        import torch

        if not self.state_path.is_file():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign state file: start over rather than trust it
            return None

    def clear_state(self) -> None:
        if self.state_path.exists():
            self.state_path.unlink()

    def status(self) -> str:
        """``done``, ``failed``, ``running`` (owner alive), ``interrupted`` (owner gone) or ``pending``."""
        if not self.exists():
            return "pending"
        try:
            record = self.read()
        except CheckpointError:
            return "interrupted"
        status = record.get("status", "pending")
        if status == "running" and not _owner_alive(record):
            return "interrupted"
        if status == "done" and not self.weights.is_file():
            return "interrupted"
        return status


def owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _owner_alive(record: dict[str, Any]) -> bool:
    info = record.get("owner") or {}
    if info.get("host") != socket.gethostname():
        return True  # cannot tell for another host: trust the record
    pid = info.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
