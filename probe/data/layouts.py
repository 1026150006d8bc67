"""The layouts in which public paired test sets are distributed, detected from the folder or named by the user.

:func:`detect` looks at the names in a folder (never at pixels) and returns the (degraded, clean) pairs with the
layout that explains them and a one-line reason; :func:`apply` uses a layout the user names. Each layout was
read off its authors' loaders and READMEs (docs/test-sets.md lists the sources):

==================  ===========================================================  ==============================
layout              what the folder holds                                        distributed this way
==================  ===========================================================  ==============================
``pair_list``       a ``pairs.csv`` (``input,target``; UTF-8 with or without a   SPA-Data (``real_test_1000.txt``),
                    BOM) or ``.txt`` lines ``RAINY CLEAN`` (paths relative to    any hand-made list
                    the list; a leading ``/`` too, as SPANet's loader reads
                    them)
``subfolders``      a degraded and a clean sub-folder (``input/``+``target/``,  Rain13K test sets, RealRain-1k,
                    ``rain/``+``norain/``, ``rainy/``+ the folder itself,        Rain100L/H, Rain200L/H
                    ``rainy_image/``+``ground_truth/``, ``data/``+``gt/``,        (``rain/X2/norain-1x2.png``),
                    ``in/``+``gt/``, ``rain/``+``gt/`` …), names matched by the   Rain1400/Rain12600, Rain12,
                    one naming rule that pairs the most files: same name, tags   RainDrop, Outdoor-Rain,
                    (``rain-1``/``norain-1``), a scale suffix (``…x2``), a ``gt``  SPA-Data (``000``/``000gt``)
                    suffix, or *many rainy per clean* (``901_1``…``901_14`` →
                    ``901``; ``im_0001_s80_a04`` → ``im_0001``)
``name_tags``       one folder of tagged names (``rain-001``/``norain-001``,    Rain100L/H (JORDER), Rain12
                    ``001_in``/``001_GT``, ``0_rain``/``0_clean``)                (``001_in.png``/``001_GT.png``)
``scenes``          scene folders of rainy frames ``…-R-NNN`` and a clean        GT-RAIN
                    ``…-C-000`` (the frame of the same number when there is one)
``rainds``          ``rainstreak/``, ``raindrop/``, ``rainstreak_raindrop/`` and  RainDS (syn ``pie-`` and real)
                    ``gt/`` (``rd-rain-1`` → ``norain-1``); ``rainds:KIND`` one
``side_by_side``    one image per pair, rainy left, clean right                  Rain1200 (DID-MDN); named only
``side_by_side:clean_left``  clean left, rainy right                             Rain800 (ID-CGAN, pix2pix
                                                                                 ``BtoA``); named only
``sorted``          a degraded and a clean sub-folder paired by natural sorted   anything names cannot pair;
                    order (equal counts)                                         named only
==================  ===========================================================  ==============================

Every rainy image of a many-to-one set is one pair. Two layouts that both explain a folder (e.g. ``input/``,
``target/`` and ``gt/``) are refused in one :class:`~probe.errors.DataError` naming the folder and the
candidates, as is a folder whose names pair fewer than half of its images under every rule (mispairable):
name the layout (``--eval-layout NAME=LAYOUT``) or point at a sub-folder. Files without a partner are returned
as ``problems`` (one line each) for the caller to raise or skip. Listing follows links with each real folder
read once (:mod:`probe.data.listing`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from probe.data.listing import walk
from probe.data.pair_lists import Found, Pair, natural_key
from probe.data.pair_lists import pair_list as _pair_list
from probe.data.pair_lists import read_list as _read_list
from probe.errors import ConfigError, DataError

DEGRADED_DIRS = ("input", "rain", "rainy", "rainy_image", "data", "in", "lq", "low", "degraded", "noisy", "blur",
                 "blurry", "hazy", "snow")
CLEAN_DIRS = ("target", "norain", "gt", "groundtruth", "ground_truth", "clean", "high", "hq", "sharp", "label",
              "labels", "clear")
DEGRADED_TAGS = ("rain", "rainy", "input", "in", "lq", "low", "degraded", "noisy", "blur", "blurry")
CLEAN_TAGS = ("norain", "clean", "gt", "target", "high", "sharp", "hq", "groundtruth", "label")
RAINDS_KINDS = ("rainstreak", "raindrop", "rainstreak_raindrop")
_SEP = r"[-_ .]"


# ------------------------------------------------------------------------------------------------ helpers
def _images(folder: Path) -> list[Path]:
    rows = walk(folder, max_depth=0)
    return sorted((folder / n for n in (rows[0][2] if rows else [])), key=lambda p: natural_key(p.name))


def _subdirs(folder: Path) -> dict[str, Path]:
    rows = walk(folder, max_depth=1)
    return {name.lower(): folder / name for name in (rows[0][1] if rows else [])}


def _untag(stem: str, tags: tuple[str, ...]) -> str | None:
    """``stem`` without one of ``tags`` as its prefix or suffix (``rain-001`` → ``001``), else None."""
    low = stem.lower()
    for tag in sorted(tags, key=len, reverse=True):
        m = re.fullmatch(rf"{tag}{_SEP}(.+)", low) or re.fullmatch(rf"{tag}(\d.*)", low) \
            or re.fullmatch(rf"(.+?){_SEP}{tag}", low)
        if m and m.group(1):
            return m.group(1).strip("-_ .")
    return None


def _strip(pattern: str) -> Callable[[str], str | None]:
    def rule(stem: str) -> str | None:
        low = stem.lower()
        m = re.fullmatch(pattern, low)
        return m.group(1) if m and m.group(1) else None
    return rule


def _same(stem: str) -> str:
    return stem.lower()


#: Naming rules of a degraded/clean folder pair: (degraded stem → key, clean stem → key, many per clean, example).
RULES: dict[str, tuple[Callable[[str], str | None], Callable[[str], str | None], bool, str]] = {
    "same name": (_same, _same, False, "'1.png' ↔ '1.png'"),
    "tags": (lambda s: _untag(s, DEGRADED_TAGS), lambda s: _untag(s, CLEAN_TAGS), False,
             "'rain-001.png' ↔ 'norain-001.png'"),
    "scale suffix": (_strip(r"(.+?)x\d+"), _same, False, "'norain-1x2.png' ↔ 'norain-1.png', as Rain200L/H"),
    "gt suffix": (_same, _strip(r"(.+?)[-_]?gt"), False, "'000.png' ↔ '000gt.png', as SPA-Data"),
    "many: index suffix": (_strip(r"(.+?)[-_]\d+"), _same, True,
                           "many rainy per clean, '901_1.jpg' … '901_14.jpg' → '901.jpg', as Rain1400/Rain12600"),
    "many: parameter suffix": (_strip(r"(.+?)(?:_s\d+_a\d+|_s\d+|_a\d+)"), _same, True,
                               "many rainy per clean, 'im_0001_s80_a04.png' → 'im_0001.png', as Outdoor-Rain"),
}


def _match(degraded: list[Path], clean: list[Path], rule: str) -> tuple[dict[Path, Path], list[str]]:
    """Pairs of ``degraded`` → ``clean`` under one naming rule, and clean keys claimed by two files."""
    deg_key, clean_key, _, _ = RULES[rule]
    table: dict[str, Path] = {}
    clashes = []
    for c in clean:
        key = clean_key(c.stem)
        if key is None:
            continue
        if key in table:
            clashes.append(f"{c} and {table[key]} are both the clean image of key {key!r}")
            continue
        table[key] = c
    out = {}
    for d in degraded:
        key = deg_key(d.stem)
        if key is not None and key in table and table[key] != d:
            out[d] = table[key]
    return out, clashes


def _best_rule(degraded: list[Path], clean: list[Path], where: str) -> tuple[str, dict[Path, Path], list[str]] | None:
    """The naming rule that pairs the most degraded files (None when no rule pairs half of them); two rules
    that pair as many files differently are refused as ambiguous."""
    scored = []
    for rule in RULES:
        matched, clashes = _match(degraded, clean, rule)
        scored.append((len(matched), rule, matched, clashes))
    top = max(s[0] for s in scored)
    if top == 0 or top * 2 < len(degraded):
        return None
    best = [s for s in scored if s[0] == top]
    if any(s[2] != best[0][2] for s in best[1:]):
        rules = ", ".join(f"{s[1]} ({RULES[s[1]][3]})" for s in best)
        raise DataError(f"{where}: file names pair in more than one way ({rules}); name the layout with "
                        "--eval-layout NAME=sorted or give a pairs.csv")
    return best[0][1], best[0][2], best[0][3]


def _problems(degraded: list[Path], clean: list[Path], matched: dict[Path, Path], rule: str,
              clean_dir: str) -> list[str]:
    out = [f"{d}: no clean partner in {clean_dir} (naming rule: {rule}, {RULES[rule][3]})"
           for d in degraded if d not in matched]
    used = set(matched.values())
    out += [f"{c}: no degraded partner (naming rule: {rule})" for c in clean if c not in used]
    return out


def _only(root: Path, found: list[Found], what: str, candidates: str, hint: str) -> Found | None:
    """The one candidate of ``found`` (None if there is none); several are one DataError naming them."""
    if len(found) > 1:
        raise DataError(f"{root}: ambiguous, {what} ({candidates}); {hint}")
    return found[0] if found else None


def _sorted_pairs(matched: dict[Path, Path]) -> list[Pair]:
    return [Pair(d, c) for d, c in sorted(matched.items(), key=lambda kv: natural_key(kv[0].as_posix()))]


# ------------------------------------------------------------------------------------------------ layouts
def _candidate_dirs(root: Path) -> tuple[list[tuple[Path, Path]], dict[str, Path]]:
    subdirs = _subdirs(root)
    degraded = [subdirs[n] for n in DEGRADED_DIRS if n in subdirs]
    clean = [subdirs[n] for n in CLEAN_DIRS if n in subdirs]
    combos = [(d, c) for d in degraded for c in clean]
    if degraded and not clean and _images(root):
        combos += [(d, root) for d in degraded]  # PReNet's Rain100L/H: norain-001.png beside rainy/rain-001.png
    return combos, subdirs


def _clean_files(root: Path) -> list[Path]:
    """The images of a folder that serves as the clean side: those not tagged as degraded."""
    return [f for f in _images(root) if _untag(f.stem, DEGRADED_TAGS) is None or _untag(f.stem, CLEAN_TAGS)]


def _degraded_files(folder: Path) -> tuple[list[Path], str]:
    """The images of a degraded folder, or of its only sub-folder holding images (Rain200's ``rain/X2/``)."""
    files = _images(folder)
    if files:
        return files, ""
    nested = [p for p in _subdirs(folder).values() if _images(p)]
    if len(nested) > 1:
        raise DataError(f"{folder}: no images but several sub-folders of them ({', '.join(p.name for p in nested)})"
                        "; pass a pairs.csv or arrange one degraded folder")
    if nested:
        return _images(nested[0]), f" (images in {folder.name}/{nested[0].name}/)"
    return [], ""


def _subfolders(root: Path, option: str | None, named: bool) -> Found | None:
    combos, subdirs = _candidate_dirs(root)
    found = []
    for d, c in combos:
        degraded, nested = _degraded_files(d)
        clean = _images(c) if c != root else _clean_files(root)
        if not degraded or not clean:
            continue
        where = f"{root}: {d.name}/ and {c.name if c != root else '.'}/"
        best = _best_rule(degraded, clean, where)
        if best is None:
            continue
        rule, matched, clashes = best
        clean_name = f"{c.name}/" if c != root else "the folder itself"
        left_out = sorted(set(subdirs) - {d.name.lower(), c.name.lower()})
        why = (f"sub-folders {d.name}/ (degraded){nested} and {clean_name} (clean), names paired by the rule "
               f"{rule!r}: {RULES[rule][3]}" + (f"; ignored: {', '.join(n + '/' for n in left_out)}" if left_out
                                               else ""))
        found.append(Found("subfolders", why, _sorted_pairs(matched),
                           clashes + _problems(degraded, clean, matched, rule, str(c)),
                           folders=(d.name, c.name if c != root else ".")))
    one = _only(root, found, "several degraded/clean folder pairs",
                ", ".join(f"{f.folders[0]}/+{f.folders[1]}/" for f in found), "point at a folder holding one "
                "pair, or give a pairs.csv")
    if one is not None:
        return one
    if named:
        raise DataError(f"{root}: layout 'subfolders' found no degraded/clean sub-folders whose names pair up "
                        f"(degraded: {', '.join(DEGRADED_DIRS[:6])}, …; clean: {', '.join(CLEAN_DIRS[:5])}, …)")
    return None


def _name_tags(root: Path, option: str | None, named: bool) -> Found | None:
    files = _images(root)
    degraded = [f for f in files if _untag(f.stem, DEGRADED_TAGS) is not None and _untag(f.stem, CLEAN_TAGS) is None]
    clean = [f for f in files if _untag(f.stem, CLEAN_TAGS) is not None]
    if degraded and clean:
        matched, clashes = _match(degraded, clean, "tags")
        if matched and len(matched) * 2 >= len(degraded):
            why = (f"one folder of tagged names ({RULES['tags'][3]}, '001_in.png' ↔ '001_GT.png', "
                   "'0_rain.png' ↔ '0_clean.png')")
            return Found("name_tags", why, _sorted_pairs(matched),
                         clashes + _problems(degraded, clean, matched, "tags", str(root)))
    if named:
        raise DataError(f"{root}: layout 'name_tags' found no tagged pairs (rain-001.png/norain-001.png)")
    return None


_FRAME = re.compile(r"(.*)-([RC])-(\d+)", re.IGNORECASE)


def _scenes(root: Path, option: str | None, named: bool) -> Found | None:
    scenes = []
    for scene in sorted(_subdirs(root).values(), key=lambda p: natural_key(p.name)):
        frames = [(m, f) for f in _images(scene) if (m := _FRAME.fullmatch(f.stem))]
        rainy = [(m, f) for m, f in frames if m.group(2).upper() == "R"]
        clean = {(m.group(1).lower(), int(m.group(3))): f for m, f in frames if m.group(2).upper() == "C"}
        if rainy or clean:
            scenes.append((scene, rainy, clean))
    if not scenes or not any(r for _, r, _ in scenes):
        if named:
            raise DataError(f"{root}: layout 'scenes' found no scene folders of '…-R-000.png' / '…-C-000.png'")
        return None
    pairs, problems = [], []
    for scene, rainy, clean in scenes:
        for m, f in rainy:
            key = m.group(1).lower()
            partner = clean.get((key, int(m.group(3)))) or clean.get((key, 0))
            if partner is None:
                problems.append(f"{f}: no clean frame {m.group(1)}-C-000 in {scene}")
            else:
                pairs.append(Pair(f, partner))
    why = (f"{len(scenes)} scene folders of rainy frames '…-R-NNN' and a clean '…-C-000' (the clean frame of the "
           "same number where one exists), as GT-RAIN")
    return Found("scenes", why, pairs, problems)


def _rainds_key(stem: str) -> str:
    low = stem.lower()
    return ("pie-" if low.startswith("pie-") else "") + low.rsplit("-", 1)[-1]


def _rainds(root: Path, option: str | None, named: bool) -> Found | None:
    subdirs = _subdirs(root)
    kinds = [k for k in RAINDS_KINDS if k in subdirs]
    if "gt" not in subdirs or not kinds:
        if named:
            raise DataError(f"{root}: layout 'rainds' needs gt/ and one of {', '.join(k + '/' for k in RAINDS_KINDS)}")
        return None
    if option is not None:
        if option not in kinds:
            raise ConfigError(f"{root}: layout 'rainds:{option}': no such kind here; available: {', '.join(kinds)}")
        kinds = [option]
    clean = _images(subdirs["gt"])
    table = {_rainds_key(c.stem): c for c in clean}
    pairs, problems, counts = [], [], []
    for kind in kinds:
        files = _images(subdirs[kind])
        counts.append(f"{kind} {len(files)}")
        for f in files:
            partner = table.get(_rainds_key(f.stem))
            if partner is None:
                problems.append(f"{f}: no clean partner in {subdirs['gt']} ('rd-rain-1.png' → 'norain-1.png')")
            else:
                pairs.append(Pair(f, partner))
    why = (f"RainDS folders {', '.join(k + '/' for k in kinds)} and gt/ ({', '.join(counts)} rainy images; "
           "'rd-rain-1.png' → 'norain-1.png')" + ("" if option or len(kinds) == 1 else
                                                   "; one kind only: --eval-layout NAME=rainds:raindrop"))
    return Found("rainds", why, pairs, problems, option=option)


def _side_by_side(root: Path, option: str | None, named: bool) -> Found | None:
    if option not in (None, "clean_left"):
        raise ConfigError(f"layout 'side_by_side:{option}': the option is 'clean_left' (or none: rainy left)")
    files = _images(root)
    if not files:
        raise DataError(f"{root}: layout 'side_by_side' found no images")
    rainy, clean = ("right", "left") if option else ("left", "right")
    why = (f"named by the user: each image is a pair, rainy {rainy} half and clean {clean} half"
           + (" (as Rain800 from ID-CGAN)" if option else " (as Rain1200 from DID-MDN)"))
    return Found("side_by_side", why, [Pair(f, f, rainy, clean) for f in files], option=option)


def _sorted(root: Path, option: str | None, named: bool) -> Found | None:
    combos, _ = _candidate_dirs(root)
    combos = [(d, c) for d, c in combos if _degraded_files(d)[0] and _images(c)]
    if len(combos) != 1:
        names = ", ".join(f"{d.name}/+{c.name}/" for d, c in combos) or "none"
        raise DataError(f"{root}: layout 'sorted' needs exactly one degraded/clean sub-folder pair, found: {names}")
    d, c = combos[0]
    degraded, nested = _degraded_files(d)
    clean = _images(c)
    if len(degraded) != len(clean):
        raise DataError(f"{root}: layout 'sorted': {d.name}/ holds {len(degraded)} images and {c.name}/ "
                        f"{len(clean)}; pairing by order needs equal counts")
    why = (f"named by the user: {d.name}/{nested} and {c.name}/ paired by natural sorted order "
           f"(first pair {degraded[0].name} ↔ {clean[0].name})")
    return Found("sorted", why, [Pair(a, b) for a, b in zip(degraded, clean)])


#: Layouts in detection order. Detection runs every detecting layout; named-only ones run when asked for.
LAYOUTS: dict[str, tuple[Callable[[Path, str | None, bool], Found | None], bool]] = {
    "pair_list": (_pair_list, True),
    "subfolders": (_subfolders, True),
    "name_tags": (_name_tags, True),
    "scenes": (_scenes, True),
    "rainds": (_rainds, True),
    "side_by_side": (_side_by_side, False),
    "sorted": (_sorted, False),
}


def parse_layout(value: str) -> tuple[str, str | None]:
    """``"side_by_side:clean_left"`` → ``("side_by_side", "clean_left")``; ConfigError for an unknown layout."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"eval layout must be a layout name, got {value!r}; layouts: {', '.join(LAYOUTS)}")
    name, _, option = value.strip().partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in LAYOUTS:
        raise ConfigError(f"unknown eval layout {value!r}; layouts: {', '.join(LAYOUTS)} "
                          "(side_by_side:clean_left, rainds:KIND)")
    if option and name not in ("side_by_side", "rainds"):
        raise ConfigError(f"eval layout {value!r}: {name!r} takes no option")
    return name, option.strip() or None


def apply(root: Path, layout: str) -> Found:
    """The pairs of ``root`` under the layout the user named (``"name"`` or ``"name:option"``)."""
    name, option = parse_layout(layout)
    found = LAYOUTS[name][0](root, option, True)
    assert found is not None  # named layouts raise instead of returning None
    found.why = found.why if found.why.startswith("named by the user") else f"named by the user: {found.why}"
    return found


def detect(root: Path) -> Found:
    """The one layout that explains ``root`` (a folder, or a .csv/.txt list of pairs), or one DataError."""
    if root.is_file():
        if root.suffix.lower() in (".csv", ".txt"):
            return _read_list(root)
        raise DataError(f"{root}: expected a folder of image pairs or a .csv/.txt list of pairs")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of image pairs")
    listed = _pair_list(root, None, False)
    if listed is not None:  # an explicit list is the authors' (or the user's) statement of the pairs
        listed.why += " (an explicit list wins over file names)"
        return listed
    found = [f for name, (fn, detects) in LAYOUTS.items() if detects and name != "pair_list"
             and (f := fn(root, None, False)) is not None]
    one = _only(root, found, "the folder fits several layouts", "; ".join(f"{f.layout}: {f.why}" for f in found),
                "name one with --eval-layout NAME=LAYOUT or point at a sub-folder")
    if one is not None:
        return one
    raise DataError(f"{root}: no image pairs found: expected degraded/clean sub-folders (input/+target/, "
                    "rain/+norain/, rainy_image/+ground_truth/, data/+gt/, …), tagged names "
                    "(rain-001.png/norain-001.png), scene folders (…-R-000.png/…-C-000.png), a pairs.csv "
                    "(input,target) or a .txt list; side-by-side images or pairing by order: --eval-layout "
                    "NAME=side_by_side|sorted")
