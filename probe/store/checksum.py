"""Per-entry checksums: the writer seals every part of a result, the reader checks what it reads.

Each part carries an attribute ``checksum`` = ``"sha256:<hex>"`` of its decoded content:

* an entry group: its attributes (probe, model_id, entry_key, sha256, time, git_revision) and the ``params``,
  ``eval`` and ``provenance`` texts;
* ``metrics``: the column names, the row count and every column (kind + values);
* ``arrays/<name>``: values, dims, attrs (JSON), string dtype, and every coordinate of the array;
* a model's ``info`` dataset: the info text and the model's attributes (sha256, path, study).

The digest is over decoded values (numbers as little-endian bytes with their dtype and shape, strings as UTF-8
with lengths), so it does not depend on HDF5's layout, compression or chunking: a copied or compacted entry
keeps its checksum. Stores of schema version 1 have none: they are read and reported as *unverified*; in a
version-2 file a missing checksum is damage like a wrong one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from probe.errors import StoreError

ATTR = "checksum"
PREFIX = "sha256:"
UNVERIFIED = "unverified"


class Digest:
    """A SHA-256 over typed, length-prefixed pieces (text, numbers, arrays)."""

    def __init__(self, kind: str):
        self._h = hashlib.sha256(kind.encode("utf-8") + b"\0")

    def text(self, value: Any) -> Digest:
        data = (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogateescape")
        self._h.update(b"T%d:" % len(data) + data)
        return self

    def array(self, value: Any) -> Digest:
        arr = np.asarray(value)
        self._h.update(b"A%d:" % arr.ndim + ",".join(map(str, arr.shape)).encode() + b";")
        if arr.dtype.kind in "OUS":
            self._h.update(b"s")
            for item in arr.reshape(-1):
                self.text(item.decode("utf-8", "surrogateescape") if isinstance(item, bytes) else item)
        else:
            little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            self._h.update(little.dtype.str.encode() + b";" + np.ascontiguousarray(little).tobytes())
        return self

    def hexdigest(self) -> str:
        return PREFIX + self._h.hexdigest()


def seal(obj: Any, digest: Digest) -> None:
    """Write ``digest`` as the ``checksum`` attribute of an HDF5 object."""
    obj.attrs[ATTR] = digest.hexdigest()


def check(obj: Any, digest: Digest, where: str, required: bool) -> bool:
    """Compare ``obj``'s stored checksum with ``digest`` of what was just read.

    Returns True when verified, False when the object has no checksum and none is ``required`` (schema 1).
    A mismatch (or a missing checksum where one is required) raises one :class:`StoreError` line ``where``.
    """
    stored = obj.attrs.get(ATTR)
    if stored is None:
        if required:
            raise StoreError(f"{where} is damaged: its checksum is missing")
        return False
    stored = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else str(stored)
    if stored == UNVERIFIED:  # copied from a schema-1 store by a merge: never had a checksum
        return False
    if stored != digest.hexdigest():
        raise StoreError(f"{where} is damaged: checksum mismatch (the bytes changed after probe wrote them)")
    return True


class Verifier:
    """Checks the parts of one store file as they are read; remembers what could not be verified (schema 1)."""

    def __init__(self, store: Any, required: bool):
        self.store = store
        self.required = required
        self.unverified: set[str] = set()
        self.checked: set[str] = set()  # entry groups already checked for unsafe objects

    def __call__(self, obj: Any, digest: Digest, part: str = "") -> None:
        where = f"results store {self.store}: {'entry ' if '/probes/' in obj.name else ''}{obj.name}" + (
            f" ({part})" if part else "")
        if not check(obj, digest, where, self.required):
            self.unverified.add(obj.name)
