"""Evaluation sets from folders of real pairs: several folders become named splits (``id``, ``ood``, …).

::

    from probe.probes.evalfolders import eval_data_from_folders
    data = eval_data_from_folders({"id": "data/Rain100L/test", "ood": "data/Rain800/test_syn"}, patch=128,
                                  layouts={"ood": "side_by_side:clean_left"})
    data.info["splits"]["id"]["layout"], data.info["splits"]["id"]["why"]   # detected, and why
    data.info["splits"]["id"]["pairs"]            # [["rain/rain-001.png", "norain/norain-001.png"], …]
    summary_lines(data)                           # one line per split: folder, layout, pairs, why

The splits hold *different* clean images (unlike synthetic sets, where every split degrades the same
backgrounds); ``alt_clean`` is None. See :mod:`probe.data.pairs` for D = O − B and the masks and
:mod:`probe.data.layouts` for the layouts (detected from each folder, or named per split with ``layouts`` /
``--eval-layout NAME=LAYOUT``); the layout, the reason and the pairs used are in ``info`` (stored with every
result).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.probes.base import EvalData


def parse_folder_args(values: list[str] | None) -> dict[str, str]:
    """``["id=data/a", "ood=data/b"]`` (or a bare ``DIR``, named ``id``) → ``{"id": "data/a", ...}``."""
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, folder = value.partition("=")
        if not sep:
            name, folder = ("id" if "id" not in out else f"split{len(out)}"), value
        name = name.strip()
        if not name or not folder or "/" in name:
            raise ConfigError(f"--eval-folder {value!r}: expected NAME=DIR (e.g. ood=data/Rain100H)")
        if name in out:
            raise ConfigError(f"--eval-folder: split {name!r} given twice")
        out[name] = folder
    return out


def parse_layout_args(values: list[str] | None, splits: Mapping[str, str] | None = None) -> dict[str, str]:
    """``["ood=side_by_side"]`` (or a bare ``LAYOUT`` for every split) → ``{"ood": "side_by_side"}``, checked."""
    from probe.data.layouts import parse_layout

    out: dict[str, str] = {}
    for value in values or []:
        name, sep, layout = value.partition("=")
        names = [name.strip()] if sep else list(splits or {"id": ""})
        if not sep:
            layout = value
        for n in names:
            if not n or not layout.strip():
                raise ConfigError(f"--eval-layout {value!r}: expected NAME=LAYOUT (e.g. ood=side_by_side)")
            parse_layout(layout)
            out[n] = layout.strip()
    unknown = sorted(set(out) - set(splits)) if splits is not None else []
    if unknown:
        raise ConfigError(f"--eval-layout {unknown[0]}=…: no --eval-folder split {unknown[0]!r} "
                          f"(splits: {', '.join(splits or {}) or 'none'})")
    return out


def eval_data_from_folders(folders: Mapping[str, str | Path], patch: int | None = 128,
                           threshold: float | None = None, n_images: int | None = None,
                           on_error: str = "raise", layouts: Mapping[str, str] | str | None = None,
                           metric_conventions: Mapping[str, Any] | None = None,
                           conventions_from: str | None = None) -> EvalData:
    """An :class:`EvalData` with one split per folder of pairs (``{split name: folder}``).

    ``metric_conventions``: a code base's ``val.metrics`` (BasicSR option file; ``conventions_from`` names it),
    kept in the set's description so the ``generalization`` probe also scores it that way
    (:mod:`probe.codebase_metrics`).

    ``layouts``: ``{split: layout}`` (or one layout for every split) for folders whose layout names cannot
    reveal (``side_by_side``, ``side_by_side:clean_left``, ``sorted``, …); other splits are detected.
    """
    from probe.data.pairs import THRESHOLD, load_pairs

    if not folders:
        raise ConfigError("no evaluation folders given")
    if isinstance(layouts, str):
        layouts = {str(n): layouts for n in folders}
    layouts = dict(layouts or {})
    unknown = sorted(set(map(str, layouts)) - set(map(str, folders)))
    if unknown:
        raise ConfigError(f"eval layout for {unknown[0]!r}: no such split (splits: {', '.join(map(str, folders))})")
    splits, infos = {}, {}
    for name, folder in folders.items():
        batch, info = load_pairs(folder, patch=patch, threshold=THRESHOLD if threshold is None else threshold,
                                 n_images=n_images, on_error=on_error, layout=layouts.get(str(name)))
        splits[str(name)] = batch
        infos[str(name)] = info
    sizes = {tuple(b.degraded.shape[-2:]) for b in splits.values()}
    if len(sizes) > 1:  # probes stack splits: one common size (a folder with smaller images sets it)
        from probe.data.pairs import center_crop_batch

        h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)
        splits = {n: center_crop_batch(b, h, w) for n, b in splits.items()}
        for n in infos:
            infos[n]["cropped_to"] = [h, w]
    info = {"source": "paired_folders", "patch": patch, "splits": infos}
    if metric_conventions:
        from probe.codebase_metrics import metric_conventions as check

        check(dict(metric_conventions))  # bad values fail here, before any model is measured
        info["metric_conventions"] = {str(k): dict(v) for k, v in metric_conventions.items()}
        info["metric_conventions_from"] = str(conventions_from or "")
    return EvalData(splits=splits, degradations={n: None for n in splits}, alt_clean=None, info=info, seed=0)


def summary_lines(data: EvalData) -> list[str]:
    """One line per folder split of ``data``: the folder, the layout, the number of pairs and why (for the load
    summary of ``probe measure``); empty for synthetic evaluation sets."""
    from probe.data.pairs import summary_line

    splits = data.info.get("splits") if data.info.get("source") == "paired_folders" else None
    return [f"eval split {n}: {summary_line(i['root'], i)}" for n, i in (splits or {}).items() if i]
