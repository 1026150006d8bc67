"""Real paired test sets: folders of degraded/clean image pairs as a :class:`DegradedBatch`.

>>> from probe.data.pairs import find_pairs, load_pairs
>>> found = find_pairs("data/Rain1400/test")                     # doctest: +SKIP
>>> found.layout, found.why                                       # doctest: +SKIP
('subfolders', "sub-folders rainy_image/ (degraded) and ground_truth/ (clean), names paired by the rule
 'many: index suffix': many rainy per clean, '901_1.jpg' … '901_14.jpg' → '901.jpg', as Rain1400/Rain12600")
>>> batch, info = load_pairs("data/Rain1400/test", patch=128)     # doctest: +SKIP
>>> info["layout"], len(info["pairs"])                            # doctest: +SKIP
('subfolders', 1400)

:func:`find_pairs` detects the layout the set is distributed in (every layout, its detection rule and the
data sets distributed that way: :mod:`probe.data.layouts` and ``docs/test-sets.md``), or uses the one named
with ``layout=`` (``"side_by_side"``, ``"side_by_side:clean_left"``, ``"sorted"``, … — layouts that names
cannot reveal). An ambiguous or mispairable folder is one :class:`~probe.errors.DataError` naming the folder
and the candidates. Each rainy image of a many-to-one set is one pair.

:func:`load_pairs` reads them with :func:`probe.data.images.read_region` (the project's one image decoder,
with its decode limit against decompression bombs), cutting the centre ``patch`` × ``patch`` window *on read*
(default 128, or the smallest side when an image is smaller), so a set of large photos costs one decoded
image at a time plus the crops. It returns O (degraded), B (clean), D = O − B, a binary mask where max over
channels of |D| exceeds ``threshold`` (default 50/255, the papers' rain-mask threshold applied to the layer)
and a soft mask |D|_max / its per-image maximum (44 bytes per pixel in all; a batch over 4 GiB, or
``PROBE_MAX_EVAL_BYTES``, is refused before reading), with a JSON description holding the layout, the reason and
the pairs used (stored with every result). A missing partner, an unreadable file or a pair of different sizes
is one DataError naming the files, or skipped with a warning with ``on_error="skip"`` (``--skip-broken``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from probe.data.layouts import Found, Pair, apply, detect
from probe.data.types import DegradedBatch
from probe.errors import ConfigError, DataError

THRESHOLD = 50 / 255
BYTES_PER_PIXEL = 4 * (3 + 3 + 3 + 1 + 1)  # float32 degraded, clean, layer, mask, soft mask
DEFAULT_MAX_BYTES = 4 << 30


def max_bytes() -> int:
    """The bound on one evaluation batch in bytes: ``PROBE_MAX_EVAL_BYTES`` if set, else 4 GiB."""
    import os

    text = os.environ.get("PROBE_MAX_EVAL_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"PROBE_MAX_EVAL_BYTES={text!r}: expected a positive integer (bytes)")
    return int(text)


def _check_bytes(root: Path, n: int, pixels: int) -> None:
    need, limit = n * pixels * BYTES_PER_PIXEL, max_bytes()
    if need > limit:
        raise DataError(f"{root}: {n} pairs of {pixels} pixels need {need / 2**30:.1f} GiB as an evaluation batch, "
                        f"over the bound of {limit / 2**30:.1f} GiB; use a smaller --eval-patch, fewer pairs "
                        "(n_images=) or set PROBE_MAX_EVAL_BYTES")


def _broken(problems: list[str], on_error: str) -> None:
    if not problems:
        return
    if on_error == "skip":
        for text in problems:
            warnings.warn(f"skipped: {text}", stacklevel=3)
        return
    more = f" (and {len(problems) - 1} more; on_error='skip' / --skip-broken skips them)" if len(problems) > 1 \
        else " (on_error='skip' / --skip-broken skips it)"
    raise DataError(problems[0] + more)


def find_pairs(root: str | Path, on_error: str = "raise", layout: str | None = None) -> Found:
    """The (degraded, clean) pairs under ``root`` (a folder or a .csv/.txt list), the layout and why.

    ``layout``: None detects it; a name (``"side_by_side"``, ``"sorted"``, ``"rainds:raindrop"``, …) uses
    that one. Files without a partner raise one DataError, or are dropped with a warning (``on_error="skip"``).
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    root = Path(root).expanduser()
    if layout is not None and not root.exists():
        raise DataError(f"{root}: no such folder of image pairs")
    found = detect(root) if layout is None else apply(root, layout)
    _broken(found.problems, on_error)
    if not found.pairs:
        raise DataError(f"{root}: no image pairs ({found.layout}: {found.why})")
    return found


def pair_record(root: str | Path, layout: str | None = None, on_error: str = "raise") -> dict:
    """The pairs a folder gives, as JSON for a store or a plan, without decoding any image:
    ``{"root", "layout", "why", "n_pairs", "pairs": [[degraded, clean], …], "problems": [...]}`` (paths relative
    to the folder; ``#left`` / ``#right`` for halves of side-by-side images)."""
    root = Path(root).expanduser()
    found = find_pairs(root, on_error, layout)
    where = root if root.is_dir() else root.parent
    return {"root": str(root.resolve()), "layout": found.name, "why": found.why, "n_pairs": len(found.pairs),
            "pairs": [p.names(where) for p in found.pairs], "problems": list(found.problems)}


def summary_line(root: str | Path, info: dict) -> str:
    """One line for the load summary: the folder, the layout, the number of pairs and why."""
    return (f"{root}: layout {info['layout']}, {info['n_images']} pairs"
            + (f" ({info['skipped']} broken skipped)" if info.get("skipped") else "") + f": {info['why']}")


def center_crop_batch(batch: DegradedBatch, h: int, w: int) -> DegradedBatch:
    """The centre ``h`` × ``w`` of every image of ``batch`` (all fields)."""
    top, left = (batch.degraded.shape[-2] - h) // 2, (batch.degraded.shape[-1] - w) // 2
    part = slice(top, top + h), slice(left, left + w)
    return DegradedBatch(degraded=batch.degraded[..., part[0], part[1]].contiguous(),
                         clean=batch.clean[..., part[0], part[1]].contiguous(),
                         layer=batch.layer[..., part[0], part[1]].contiguous(),
                         mask=batch.mask[..., part[0], part[1]].contiguous(),
                         soft_mask=batch.soft_mask[..., part[0], part[1]].contiguous(), params=dict(batch.params))


def load_pairs(root: str | Path, patch: int | None = 128, threshold: float = THRESHOLD, n_images: int | None = None,
               on_error: str = "raise", layout: str | None = None) -> tuple[DegradedBatch, dict]:
    """A :class:`DegradedBatch` of the pairs under ``root`` and a JSON description (root, layout, why, pairs).

    ``patch``: centre crop (pixels) cut from every pair on read; ``None`` keeps full size (all pairs must then
    have one size). ``n_images``: at most this many pairs (the first in natural sorted order). ``layout``: see
    :func:`find_pairs`.
    """
    if patch is not None and (isinstance(patch, bool) or not isinstance(patch, int) or patch < 8):
        raise ConfigError(f"patch must be null or an integer >= 8, got {patch!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ConfigError(f"threshold must be a number in (0, 1), got {threshold!r}")
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1):
        raise ConfigError(f"n_images must be null or an integer >= 1, got {n_images!r}")
    root = Path(root).expanduser()
    found = find_pairs(root, on_error, layout)
    pairs = found.pairs[:n_images] if n_images is not None else found.pairs
    crop = None if patch is None else (patch, patch)
    if patch is not None:
        _check_bytes(root, len(pairs), patch * patch)  # before reading anything
    images, used, problems = _read_pairs(pairs, crop, on_error)
    if not images:
        raise DataError(f"{root}: no readable image pairs")
    if patch is None:
        _check_bytes(root, len(images), max(o.shape[0] * o.shape[1] for o, _ in images))
    if patch is not None:
        size = min(min(o.shape[:2]) for o, _ in images)
        if size < patch:  # an image smaller than the patch sets the crop of all: cut again, exactly centred
            images, used, more = _read_pairs(used, (size, size), on_error)
            problems += more
    elif len({o.shape for o, _ in images}) > 1:
        raise DataError(f"{root}: pairs of different sizes need a crop (patch=)")
    degraded = torch.from_numpy(np.stack([o for o, _ in images])).permute(0, 3, 1, 2).contiguous()
    clean = torch.from_numpy(np.stack([c for _, c in images])).permute(0, 3, 1, 2).contiguous()
    del images
    layer = degraded - clean
    strength = layer.abs().amax(1, keepdim=True)
    mask = (strength > threshold).float()
    soft = strength / strength.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    where = root if root.is_dir() else root.parent
    info = {"root": str(root.resolve()), "layout": found.name, "why": found.why, "convention": found.name,
            "n_images": len(used), "patch": int(degraded.shape[-1]) if patch is not None else None,
            "threshold": float(threshold), "skipped": len(found.problems) + len(problems),
            "pairs": [p.names(where) for p in used]}
    if found.layout == "side_by_side":
        _check_halves(root, degraded, clean, found)
    return DegradedBatch(degraded=degraded, clean=clean, layer=layer, mask=mask, soft_mask=soft), info


def _read_pairs(pairs: list[Pair], crop: tuple[int, int] | None,
                on_error: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[Pair], list[str]]:
    from probe.data.images import read_region

    images, used, problems = [], [], []
    for pair in pairs:
        try:
            o, o_size = read_region(pair.degraded, crop, pair.degraded_half)
            c, c_size = read_region(pair.clean, crop, pair.clean_half)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if o_size != c_size:
            problems.append(f"{pair.degraded} ({o_size[1]}×{o_size[0]}) and {pair.clean} ({c_size[1]}×{c_size[0]}) "
                            "differ in size")
            continue
        images.append((o, c))
        used.append(pair)
    _broken(problems, on_error)
    return images, used, problems


def _check_halves(root: Path, degraded: torch.Tensor, clean: torch.Tensor, found: Found) -> None:
    """Rain adds light: warn when the half named rainy is darker than the clean one in most pairs (swapped?)."""
    darker = float(((degraded - clean).flatten(1).mean(1) < 0).float().mean())
    if darker > 0.5:
        other = "side_by_side" if found.option else "side_by_side:clean_left"
        warnings.warn(f"{root}: in {darker:.0%} of the pairs the half read as rainy is darker than the clean one; "
                      f"are the halves swapped? (try --eval-layout NAME={other})", stacklevel=3)
