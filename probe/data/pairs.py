"""Real paired test sets: folders of degraded/clean image pairs as a :class:`DegradedBatch`.

:func:`find_pairs` recognises, in this order:

1. **Sub-folders** matched by file stem: ``input/``+``target/``, ``rain/``+``norain/``, ``data/``+``gt/``,
   ``low/``+``high/`` (also ``rainy/``+``clean/``, ``lq/``+``gt/``, ``input/``+``gt/``, ``degraded/``+``clean/``,
   ``noisy/``+``clean/``, ``blur/``+``sharp/``; case-insensitive). Stems match exactly, or after removing a
   tag (``rain-001.png`` in ``rain/`` pairs with ``norain-001.png`` in ``norain/``).
2. **Name pairs in one folder**: a degraded tag and a clean tag as prefix or suffix of the stem, e.g.
   ``rain-001.png``/``norain-001.png``, ``001_rain.png``/``001_clean.png``, ``x_input.png``/``x_gt.png``.
3. **A CSV of pairs** (the fallback): ``pairs.csv`` in the folder, or the CSV file itself, with columns
   ``input,target`` (paths relative to the CSV).

:func:`load_pairs` reads them with :func:`probe.data.backgrounds.folder.read_image` (the project's one image
decoder), centre-crops every pair to a common ``patch`` (default: 128, or the smallest side when an image is
smaller) and returns O (degraded), B (clean), D = O − B, a binary mask where max over channels of |D| exceeds
``threshold`` (default 50/255, the papers' rain-mask threshold applied to the layer) and a soft mask
|D|_max / its per-image maximum. A missing partner, an unreadable file or a pair of different sizes is one
:class:`~probe.errors.DataError` naming the files, or skipped with a warning with ``on_error="skip"``.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import torch

from probe.data.types import DegradedBatch
from probe.errors import ConfigError, DataError

FOLDER_PAIRS = [("input", "target"), ("rain", "norain"), ("data", "gt"), ("low", "high"), ("rainy", "clean"),
                ("lq", "gt"), ("input", "gt"), ("degraded", "clean"), ("noisy", "clean"), ("blur", "sharp"),
                ("rainy", "norain"), ("lq", "hq")]
DEGRADED_TAGS = ("rain", "rainy", "input", "lq", "low", "degraded", "noisy", "blur", "blurry")
CLEAN_TAGS = ("norain", "clean", "gt", "target", "high", "sharp", "hq", "groundtruth", "label")
THRESHOLD = 50 / 255
_SEP = r"[-_ .]"


def _images(folder: Path) -> list[Path]:
    from probe.data.backgrounds.folder import EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(EXTENSIONS))


def _untag(stem: str, tags: tuple[str, ...]) -> str | None:
    """``stem`` without one of ``tags`` as its prefix or suffix (``rain-001`` → ``001``), else None."""
    low = stem.lower()
    for tag in sorted(tags, key=len, reverse=True):
        m = re.fullmatch(rf"{tag}{_SEP}?(.+)", low) or re.fullmatch(rf"(.+?){_SEP}?{tag}", low)
        if m and m.group(1):
            return m.group(1).strip("-_ .")
    return None


def _by_key(files: list[Path], tags: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for f in files:
        out[f.stem.lower()] = f
        key = _untag(f.stem, tags)
        if key:
            out.setdefault(f"~{key}", f)
    return out


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


def find_pairs(root: str | Path, on_error: str = "raise") -> tuple[list[tuple[Path, Path]], str]:
    """The (degraded, clean) file pairs under ``root`` and the convention found (see the module docstring)."""
    root = Path(root).expanduser()
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if root.is_file() and root.suffix.lower() == ".csv":
        return _csv_pairs(root, on_error), "csv"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of image pairs")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for deg, clean in FOLDER_PAIRS:
        if deg in subdirs and clean in subdirs:
            return _folder_pairs(subdirs[deg], subdirs[clean], on_error), f"{deg}/+{clean}/"
    files = _images(root)
    inputs = {k: f for f in files if (k := _untag(f.stem, DEGRADED_TAGS)) is not None
              and _untag(f.stem, CLEAN_TAGS) is None}
    targets = {k: f for f in files if (k := _untag(f.stem, CLEAN_TAGS)) is not None}
    if inputs and targets:
        problems = [f"{inputs[k]}: no clean partner (expected e.g. a file tagged {'/'.join(CLEAN_TAGS[:3])} "
                    f"with the key {k!r})" for k in sorted(set(inputs) - set(targets))]
        problems += [f"{targets[k]}: no degraded partner" for k in sorted(set(targets) - set(inputs))]
        _broken(problems, on_error)
        return [(inputs[k], targets[k]) for k in sorted(set(inputs) & set(targets))], "name tags"
    if (root / "pairs.csv").is_file():
        return _csv_pairs(root / "pairs.csv", on_error), "csv"
    names = ", ".join(f"{a}/+{b}/" for a, b in FOLDER_PAIRS[:4])
    raise DataError(f"{root}: no image pairs found: expected sub-folders ({names}, …), tagged names "
                    "(rain-001.png/norain-001.png, 001_rain.png/001_clean.png) or a pairs.csv (input,target)")


def _folder_pairs(deg: Path, clean: Path, on_error: str) -> list[tuple[Path, Path]]:
    inputs, targets = _images(deg), _images(clean)
    tmap = _by_key(targets, CLEAN_TAGS)
    pairs, problems, used = [], [], set()
    for f in inputs:
        partner = tmap.get(f.stem.lower())
        if partner is None:
            key = _untag(f.stem, DEGRADED_TAGS)
            partner = tmap.get(f"~{key}") if key else None
        if partner is None:
            problems.append(f"{f}: no partner in {clean} (matched by file stem)")
            continue
        used.add(partner)
        pairs.append((f, partner))
    problems += [f"{t}: no partner in {deg} (matched by file stem)" for t in targets if t not in used]
    _broken(problems, on_error)
    return pairs


def _csv_pairs(path: Path, on_error: str) -> list[tuple[Path, Path]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV of pairs ({exc})") from exc
    if not rows or not {"input", "target"} <= set(rows[0]):
        raise DataError(f"{path}: a CSV of pairs needs the columns input,target")
    pairs, problems = [], []
    for i, row in enumerate(rows, start=2):
        a, b = (path.parent / (row.get("input") or ""), path.parent / (row.get("target") or ""))
        gone = [str(p) for p in (a, b) if not p.is_file()]
        if gone:
            problems.append(f"{path}:{i}: missing file {gone[0]}")
        else:
            pairs.append((a, b))
    _broken(problems, on_error)
    return pairs


def _center(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return t[..., top:top + size, left:left + size]


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
               on_error: str = "raise") -> tuple[DegradedBatch, dict]:
    """A :class:`DegradedBatch` of the pairs under ``root`` and a JSON description (root, convention, files).

    ``patch``: centre crop (pixels) applied to every pair; ``None`` keeps full size (all pairs must then have
    one size). ``n_images``: at most this many pairs (the first in sorted order).
    """
    from probe.data.backgrounds.folder import read_image

    if patch is not None and (isinstance(patch, bool) or not isinstance(patch, int) or patch < 8):
        raise ConfigError(f"patch must be null or an integer >= 8, got {patch!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ConfigError(f"threshold must be a number in (0, 1), got {threshold!r}")
    pairs, convention = find_pairs(root, on_error)
    if n_images is not None:
        pairs = pairs[:n_images]
    images, problems, used = [], [], []
    for a, b in pairs:
        try:
            o, c = read_image(a), read_image(b)
        except DataError as exc:
            problems.append(str(exc))
            continue
        if o.shape != c.shape:
            problems.append(f"{a} ({o.shape[1]}×{o.shape[0]}) and {b} ({c.shape[1]}×{c.shape[0]}) differ in size")
            continue
        images.append((torch.from_numpy(o).permute(2, 0, 1), torch.from_numpy(c).permute(2, 0, 1)))
        used.append((a, b))
    _broken(problems, on_error)
    if not images:
        raise DataError(f"{root}: no readable image pairs")
    size = min(min(o.shape[-2:]) for o, _ in images) if patch is None or any(
        min(o.shape[-2:]) < patch for o, _ in images) else patch
    if patch is None and len({tuple(o.shape) for o, _ in images}) > 1:
        raise DataError(f"{root}: pairs of different sizes need a crop (patch=)")
    degraded = torch.stack([_center(o, size) if patch is not None else o for o, _ in images]).contiguous()
    clean = torch.stack([_center(c, size) if patch is not None else c for _, c in images]).contiguous()
    layer = degraded - clean
    strength = layer.abs().amax(1, keepdim=True)
    mask = (strength > threshold).float()
    soft = strength / strength.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    info = {"root": str(Path(root).expanduser().resolve()), "convention": convention, "n_images": len(images),
            "patch": int(size) if patch is not None else None, "threshold": float(threshold),
            "files": [[str(a.name), str(b.name)] for a, b in used]}
    return DegradedBatch(degraded=degraded, clean=clean, layer=layer, mask=mask, soft_mask=soft), info
