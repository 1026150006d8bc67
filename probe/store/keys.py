"""What names a stored result: its :class:`ContentKey` and where a model lives in a store file.

::

    from probe.store import ResultStore
    key = ResultStore(path, study="derain").key_for("m0", "generalization", {}, eval_info, sha256=w)
    key.model_id, key.entry_key                          # ("m0", "<params digest>…")
    model_path("derain", "m0")                           # "studies/derain/models/m0"
"""

from __future__ import annotations

from typing import NamedTuple


class ContentKey(NamedTuple):
    """What identifies one stored result: the model (in its study), the probe, the entry key (parameters and
    evaluation set, its content digest included) and the weights' SHA-256 (see
    :meth:`probe.store.writer.ResultStore.key_for`)."""

    study: str
    model_id: str
    probe: str
    entry_key: str
    sha256: str


def model_path(study: str, model_id: str) -> str:
    """The HDF5 path of a model's group: ``models/<id>`` (no study) or ``studies/<study>/models/<id>``
    (``docs/store.md``, "Layout of one file")."""
    return f"studies/{study}/models/{model_id}" if study else f"models/{model_id}"


__all__ = ["ContentKey", "model_path"]
