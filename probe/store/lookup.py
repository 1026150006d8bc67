"""A writer's targeted lookups: one model or one entry, without building a merged view of the whole store.

The writer asks once per result whether it is stored (:meth:`probe.store.writer.ResultStore.has`) and once per
write for the model's current group. Each lookup looks in the transaction's uncommitted segment first, then
honours the transaction's uncommitted deletions, then walks the committed files newest first
(:meth:`probe.store.cache.FileCache.lookup`): O(1) per file, whatever the store holds::

    group = find_entry(cache, pending, tombstones, ("derain", "m0", "generalization", key))   # or None

``tombstones`` are deletions ``[kind, study, model_id, probe, entry_key]`` (``docs/store.md``, "Layout of one
file": ``/deleted``).
"""

from __future__ import annotations

import h5py

from probe.store.cache import FileCache
from probe.store.keys import model_path


def dropped(tombstones: list[list[str]], study: str, model_id: str, probe: str = "", key: str = "") -> bool:
    """Whether the deletions ``tombstones`` remove that model (``probe=""``) or that entry."""
    for kind, s, m, p, k in tombstones:
        if (s, m) != (study, model_id):
            continue
        if kind == "model" or (probe and (kind == "results" or (p == probe and (kind == "probe" or k == key)))):
            return True
    return False


def find_model(cache: FileCache, pending: h5py.File | None, tombstones: list[list[str]], study: str,
               model_id: str) -> h5py.Group | None:
    """The newest group of a model (uncommitted first), or None when it is not stored or deleted."""
    where = model_path(study, model_id)
    if pending is not None and where in pending:
        return pending[where]
    if dropped(tombstones, study, model_id):
        return None
    found = cache.lookup(where, lambda tombs: any(
        t[0] == "model" and tuple(t[1:3]) == (study, model_id) for t in tombs))
    return None if found is None else found[0]


def find_entry(cache: FileCache, pending: h5py.File | None, tombstones: list[list[str]],
               key: tuple[str, str, str, str]) -> h5py.Group | None:
    """The newest group of the entry ``key = (study, model_id, probe, entry_key)`` (uncommitted first), its
    subtree checked for objects probe never writes (:func:`probe.store.safety.check_tree`, raises
    :class:`probe.errors.StoreError`); None when it is not stored or deleted."""
    study, model_id, probe, ekey = key
    where = f"{model_path(study, model_id)}/probes/{probe}/{ekey}"
    if pending is not None and where in pending:
        return pending[where]
    if dropped(tombstones, study, model_id, probe, ekey):
        return None

    def deletes(tombs: list[list[str]]) -> bool:
        return any(tuple(t[1:3]) == (study, model_id) and (
            t[0] in ("model", "results") or (t[3] == probe and (t[0] == "probe" or t[4] == ekey)))
            for t in tombs)

    found = cache.lookup(where, deletes)
    if found is None:
        return None
    group, verify = found
    if group.name not in verify.checked:
        from probe.store.safety import check_tree

        check_tree(group, verify.store)
        verify.checked.add(group.name)
    return group


__all__ = ["dropped", "find_entry", "find_model"]
