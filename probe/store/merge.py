"""Merging a store's commit segments (:mod:`probe.store.segments`): tiered merges after a commit, compaction.

Every commit adds one small segment file; merging keeps the number of files a reader opens O(log n) while each
result is rewritten O(log n) times over the store's life (``docs/store.md``, "Commit cost")::

    merge_tiers(Path("reports/study/results.h5"), fanout=4, ratio=1.0)   # after a commit
    compact(Path("reports/study/results.h5"))                            # everything into results.h5

Only the lock holder (:class:`probe.store.writer.ResultStore`) may call these. A merged file appears
atomically (:func:`probe.store.segments.write_bytes_atomic`) before the files it supersedes are removed, so a
reader always sees every committed result.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from probe.store.checksum import ATTR as CHECKSUM
from probe.store.checksum import UNVERIFIED, Verifier
from probe.store.codec import attach_scales
from probe.store.entry import create_store
from probe.store.keys import model_path
from probe.store.schema import attr_str, open_store, write_text
from probe.store.segments import Segment, list_segments, segment_dir, segment_name, superseded, write_bytes_atomic
from probe.store.view import DELETED, StoreView, read_tombstones


def covers(path: Path) -> int:
    """The number of the last segment folded into the base file ``path`` (0: none)."""
    with h5py.File(path, "r", locking=False) as handle:
        return int(np.asarray(handle.attrs.get("covers", 0)).item())


def next_seq(path: Path) -> int:
    """The number the next commit segment of the store ``path`` gets."""
    last = covers(path)
    for segment in list_segments(path, 0):
        last = max(last, segment.last)
    return last + 1


def merge_tiers(path: Path, fanout: int, ratio: float) -> None:
    """Tiered merging: once the ``fanout`` newest segments have similar sizes (within 2×), they become one;
    once the segments together are as big as the base (× ``ratio``), all fold into the base. Each result is
    rewritten O(log n) times over the store's life; at most ``fanout − 1`` files per size tier stay, so a
    reader opens O(log n) files."""
    chain = list_segments(path, covers(path))
    while chain:
        if path.stat().st_size <= ratio * sum(s.size for s in chain):
            fold_into_base(path, chain)
            break
        tail = chain[-fanout:]
        sizes = [max(s.size, 1) for s in tail]
        if len(tail) < fanout or max(sizes) > 2 * min(sizes):
            break
        chain = chain[:-fanout] + [merge_segments(path, tail)]
    _remove_superseded(path)


def compact(path: Path) -> None:
    """Fold every segment into the base file ``path`` (one self-contained file, e.g. to publish), dropping the
    space of replaced or deleted results."""
    last = covers(path)
    fold_into_base(path, list_segments(path, last), last)
    _remove_superseded(path)


def _remove_superseded(path: Path) -> None:
    for stale in superseded(path, covers(path)):
        stale.unlink(missing_ok=True)
    try:
        segment_dir(path).rmdir()  # only when empty: everything folded into results.h5
    except OSError:
        pass


def merge_segments(path: Path, segments: list[Segment]) -> Segment:
    """Merge consecutive ``segments`` of the store ``path`` into one new segment file, named by their range; it
    keeps their deletions (they still delete from the files older than it)."""
    image = _merged_image(path, [s.path for s in segments], into_base=False)
    first, last = segments[0].first, segments[-1].last
    dest = segment_dir(path) / segment_name(first, last)
    write_bytes_atomic(dest, image)
    return Segment(first, last, dest)


def fold_into_base(path: Path, segments: list[Segment], covered: int = 0) -> None:
    """Merge the base file ``path`` and ``segments`` into a new base, recording the last segment folded in
    (``covered`` when there are none)."""
    image = _merged_image(path, [path, *(s.path for s in segments)], into_base=True,
                          covered=segments[-1].last if segments else covered)
    write_bytes_atomic(path, image, replace=True)


def _merged_image(path: Path, sources: list[Path], into_base: bool, covered: int = 0) -> bytes:
    """The bytes of one store file holding the merged state of ``sources`` (oldest first)."""
    handles = [open_store(p) for p in sources]
    try:
        files = []
        for p, h in zip(sources, handles):
            version = int(np.asarray(h.attrs["schema_version"]).item())
            files.append((h, Verifier(p, required=version >= 2)))
        view = StoreView(path, files, [])
        created = attr_str(handles[0], "created")
        out = create_store(f"merge-{id(handles)}", created=created or None, memory=True)
        try:
            copy_view(view, out)
            if not into_base:  # a merged segment still deletes from the files older than it
                tombstones = [t for h in handles for t in read_tombstones(h)]
                if tombstones:
                    write_text(out, DELETED, json.dumps(tombstones))
            else:
                out.attrs["covers"] = np.int64(covered)
            out.flush()
            return out.id.get_file_image()
        finally:
            out.close()
    finally:
        for h in handles:
            h.close()


def copy_view(view: StoreView, out: h5py.File) -> None:
    """Write the merged state of ``view`` into the empty store ``out`` (entries copied as they are; entries of
    schema-1 files, which have no checksums, are marked ``unverified``)."""
    for (study, model_id), (handle, path, verify) in sorted(view.models.items()):
        group = handle[path]
        dst = out.require_group(model_path(study, model_id))
        for name, value in group.attrs.items():
            dst.attrs[name] = value
        dst.attrs["model_id"], dst.attrs["study"] = model_id, study
        if "info" in group:
            out.copy(group["info"], dst, name="info")
            if not verify.required and CHECKSUM not in dst["info"].attrs:
                dst["info"].attrs[CHECKSUM] = UNVERIFIED
    for study, model_id, probe, key, entry in view.iter_entries():
        verify = view.verifier((study, model_id, probe, key))
        probes = out.require_group(model_path(study, model_id)).require_group("probes").require_group(probe)
        out.copy(entry, probes, name=key)
        copied = probes[key]
        if not verify.required:
            parts = [copied, *([copied["metrics"]] if "metrics" in copied else []),
                     *copied.get("arrays", {}).values()]
            for part in parts:
                if CHECKSUM not in part.attrs:
                    part.attrs[CHECKSUM] = UNVERIFIED
        for array in copied.get("arrays", {}):
            attach_scales(copied, array)


__all__ = ["compact", "copy_view", "covers", "fold_into_base", "merge_segments", "merge_tiers", "next_seq"]
