"""Pairs of a test set as records (:class:`Pair`, :class:`Found`), and the pairs an explicit list names.

A list is a ``pairs.csv`` with the columns ``input,target`` (UTF-8, with or without the BOM Excel writes) or a
``.txt`` file of ``RAINY CLEAN`` lines (paths relative to the list; a leading ``/`` too, as SPANet's loader
reads SPA-Data's ``real_test_1000.txt``). A list over ``LIST_BYTES`` is refused; a listed file that is missing
is a ``problem`` (one line) for the caller to raise or skip. :mod:`probe.data.layouts` detects the other layouts.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from probe.data.listing import is_image_name
from probe.errors import DataError

LIST_BYTES = 64 << 20  # a pair list larger than this is refused (a list of 10⁶ pairs is ~100 MB)


@dataclass(frozen=True)
class Pair:
    """One (degraded, clean) pair: two files, or two halves (``"left"`` / ``"right"``) of one file."""

    degraded: Path
    clean: Path
    degraded_half: str | None = None
    clean_half: str | None = None

    def names(self, root: Path) -> list[str]:
        """The pair as two paths relative to ``root`` (``#left`` / ``#right`` for halves), for the store."""
        def show(path: Path, half: str | None) -> str:
            try:
                text = path.relative_to(root).as_posix()
            except ValueError:
                text = path.as_posix()
            return f"{text}#{half}" if half else text

        return [show(self.degraded, self.degraded_half), show(self.clean, self.clean_half)]


@dataclass
class Found:
    """What a layout makes of a folder: its pairs, a one-line reason and the files it could not pair."""

    layout: str
    why: str
    pairs: list[Pair]
    problems: list[str] = field(default_factory=list)
    option: str | None = None
    folders: tuple[str, ...] = ()  # the (degraded, clean) sub-folders read, for messages

    @property
    def name(self) -> str:
        return f"{self.layout}:{self.option}" if self.option else self.layout


def natural_key(text: str) -> list[object]:
    """Sort key ordering ``2`` before ``10`` (digits compared as numbers), case-insensitive."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text.lower()) if p]



def pair_list(root: Path, option: str | None, named: bool) -> Found | None:
    """The ``pair_list`` layout: ``root`` is a list, or holds a ``pairs.csv`` or exactly one ``.txt`` list."""
    if root.is_file():
        return read_list(root)
    if (root / "pairs.csv").is_file():
        return read_list(root / "pairs.csv")
    lists = [p for p in _text_files(root) if _looks_like_pair_list(p)]
    if len(lists) > 1:
        raise DataError(f"{root}: several lists of pairs ({', '.join(p.name for p in lists)}); pass one of them "
                        "as the folder")
    if lists:
        return read_list(lists[0])
    if named:
        raise DataError(f"{root}: layout 'pair_list' needs a pairs.csv or a .txt list of pairs")
    return None


def _text_files(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.suffix.lower() == ".txt" and p.is_file()
                      and not p.name.startswith("."))
    except OSError:
        return []


def _text(path: Path) -> str:
    try:
        if path.stat().st_size > LIST_BYTES:
            raise DataError(f"{path}: a list of pairs over {LIST_BYTES >> 20} MB")
        return path.read_bytes().decode("utf-8-sig")  # Excel writes a UTF-8 BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable list of pairs ({exc})") from exc


def _looks_like_pair_list(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8-sig", "replace")
    except OSError:
        return False
    lines = [ln for ln in head.splitlines()[:20] if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and all(len(ln.split()) == 2 and all(is_image_name(Path(t).name) for t in ln.split())
                               for ln in lines[:-1] or lines)


def _resolve(listed: str, base: Path) -> Path:
    path = Path(listed)
    if path.is_absolute() and path.exists():
        return path
    return base / listed.lstrip("/").removeprefix("./")


def read_list(path: Path) -> Found:
    """The pairs a ``pairs.csv`` (``input,target``) or a ``.txt`` list (``RAINY CLEAN`` per line) names."""
    text = _text(path)
    rows: list[tuple[int, str, str]] = []
    if path.suffix.lower() == ".csv":
        try:
            table = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise DataError(f"{path}: unreadable CSV of pairs ({exc})") from exc
        header = {k.strip().lower(): k for k in (table[0] if table else {}) if k is not None}
        if not table or not {"input", "target"} <= set(header):
            raise DataError(f"{path}: a CSV of pairs needs the columns input,target (found: "
                            f"{', '.join(header) or 'no rows'})")
        rows = [(i, (r.get(header["input"]) or "").strip(), (r.get(header["target"]) or "").strip())
                for i, r in enumerate(table, start=2)]
        kind = "a CSV of pairs (input,target)"
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{path}:{i}: expected two paths (rainy clean), got {len(parts)} fields")
            rows.append((i, parts[0], parts[1]))
        kind = "a text list of 'rainy clean' paths, as SPA-Data's real_test_1000.txt"
    pairs, problems = [], []
    for i, a, b in rows:
        if not a or not b:
            problems.append(f"{path}:{i}: an empty path")
            continue
        pa, pb = _resolve(a, path.parent), _resolve(b, path.parent)
        gone = [str(p) for p in (pa, pb) if not p.is_file()]
        if gone:
            problems.append(f"{path}:{i}: missing file {gone[0]}")
        else:
            pairs.append(Pair(pa, pb))
    return Found("pair_list", f"{path.name} is {kind}", pairs, problems)
