"""Identity by content: what an evaluation set *is*, not what it is called.

A stored result is identified by the model's weights (SHA-256 of the checkpoint), the probe's parameters and
the evaluation set. :func:`eval_identity` returns the evaluation set's description (``EvalData.info``) with a
``content`` digest added — so an evaluation set whose images changed gets a different entry key and is
measured afresh, while one whose description and content are unchanged is skipped:

* synthetic splits: SHA-256 of the generator description (background source and options, degradation of each
  split, number of images, patch, seed: the ``info`` itself) and of the generated images (degraded, clean,
  layer and mask tensors), so a change of probe's generator code is caught too;
* real folders of pairs (``info["source"] == "paired_folders"``): SHA-256 of the bytes of every image file
  used (in the listed order), plus the decoded tensors — re-exported or re-pointed images count as new.

::

    from probe.store import eval_identity
    eval_info = eval_identity(data)          # {..., "content": "sha256:3b1f…"}
    store.has(store.key_for(model_id, probe.name, probe.params, eval_info, sha256=weights))
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from probe.errors import DataError, one_line

CONTENT = "content"
_FIELDS = ("degraded", "clean", "layer", "mask", "soft_mask")


def _tensor_bytes(value: Any) -> bytes:
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().to("cpu").contiguous().numpy()
    arr = np.ascontiguousarray(np.asarray(value))
    return arr.dtype.str.encode() + repr(arr.shape).encode() + arr.tobytes()


def _file_digest(path: Path, h: Any) -> None:
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(one_line(f"evaluation image {path}: cannot read it to identify the set ({exc})")) from None


def content_digest(data: Any) -> str:
    """``"sha256:<hex>"`` of an :class:`~probe.probes.base.EvalData`'s description and content (module doc)."""
    info = dict(getattr(data, "info", None) or {})
    info.pop(CONTENT, None)
    h = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode("utf-8"))
    if info.get("source") == "paired_folders":
        for name in sorted(info.get("splits") or {}):
            split = info["splits"][name] or {}
            root = Path(split.get("root", ""))
            where = root if root.is_dir() else root.parent
            for pair in split.get("pairs") or []:  # paths relative to the folder ("#left": half of a file)
                for shown in pair:
                    file = Path(str(shown).split("#", 1)[0])
                    h.update(b"F" + str(shown).encode("utf-8", "surrogateescape") + b"\0")
                    _file_digest(file if file.is_absolute() else where / file, h)
    for name in sorted(getattr(data, "splits", {}) or {}):
        batch = data.splits[name]
        h.update(b"S" + name.encode("utf-8") + b"\0")
        for field in _FIELDS:
            value = getattr(batch, field, None)
            if value is not None:
                h.update(field.encode() + b":" + _tensor_bytes(value))
    return "sha256:" + h.hexdigest()


def eval_identity(data: Any) -> dict[str, Any]:
    """``data.info`` plus its ``content`` digest (:func:`content_digest`): the ``eval_info`` to store with and
    to look results up by. Computed once per evaluation set (it hashes the images)."""
    info = dict(getattr(data, "info", None) or {})
    if CONTENT not in info:
        info[CONTENT] = content_digest(data)
    return info
