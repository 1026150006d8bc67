"""Evaluation sets from folders of real pairs: several folders become named splits (``id``, ``ood``, …).

::

    from probe.probes.evalfolders import eval_data_from_folders
    data = eval_data_from_folders({"id": "data/Rain100L/test", "ood": "data/Rain100H/test"}, patch=128)
    data.info["splits"]["ood"]["convention"]      # 'rain/+norain/'

The splits hold *different* clean images (unlike synthetic sets, where every split degrades the same
backgrounds); ``alt_clean`` is None. See :mod:`probe.data.pairs` for the naming conventions, D = O − B and the
masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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


def eval_data_from_folders(folders: Mapping[str, str | Path], patch: int | None = 128,
                           threshold: float | None = None, n_images: int | None = None,
                           on_error: str = "raise") -> EvalData:
    """An :class:`EvalData` with one split per folder of pairs (``{split name: folder}``)."""
    from probe.data.pairs import THRESHOLD, load_pairs

    if not folders:
        raise ConfigError("no evaluation folders given")
    splits, infos = {}, {}
    for name, folder in folders.items():
        batch, info = load_pairs(folder, patch=patch, threshold=THRESHOLD if threshold is None else threshold,
                                 n_images=n_images, on_error=on_error)
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
    return EvalData(splits=splits, degradations={n: None for n in splits}, alt_clean=None, info=info, seed=0)
