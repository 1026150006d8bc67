"""``folder``: backgrounds from any folder of images (png, jpg/jpeg, bmp, tif/tiff), searched recursively.

>>> from probe.data.backgrounds import make_background
>>> src = make_background("folder", patch=64, root="~/data/DIV2K_train_HR", size=256)  # doctest: +SKIP
>>> src.images(8).shape                                                                 # doctest: +SKIP
torch.Size([8, 3, 256, 256])

* Files are listed recursively by :func:`probe.data.listing.list_images` (hidden files and folders skipped,
  links followed, each real folder read once and each file listed once, so a link back up the tree neither
  repeats images nor hangs) and sorted by relative path, so the listing is the same on every machine.
  Every ``1 / test_fraction``-th file of that listing (evenly spaced) forms the test split, independent of
  the seed; the seed only orders the files within a split.
* Files are decoded by :func:`probe.data.images.read_image` (re-exported here): RGB float32 in [0, 1] with one
  scale per bit depth (8/16/32-bit integer, float), palette and alpha handled, EXIF orientation applied.
* Each image gives one ``size`` × ``size`` background: ``fit="crop"`` takes the centre window at native
  resolution (enlarging the centre square only when the image is smaller than ``size``), ``fit="resize"``
  resizes the centre square. Only that square is kept from the decoded file (crop on read), and the decode
  limit of :func:`probe.data.images.max_pixels` refuses decompression bombs before decoding.
* An unreadable file, or one smaller than the patch, raises a :class:`~probe.errors.DataError` naming it;
  with ``on_error="skip"`` it is skipped with a warning naming it instead. Files whose pixels repeat an
  earlier image of the split are skipped with a warning (the images must be distinct).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.data.backgrounds.base import (
    BackgroundSource,
    Option,
    float_in,
    image_digest,
    one_of,
    resize_square,
)
from probe.data.images import (
    read_image,  # noqa: F401 (also the public name probe.data.backgrounds.folder.read_image)
    read_region,
)
from probe.data.listing import EXTENSIONS, list_images  # noqa: F401 (public names of this module too)
from probe.errors import DataError


def _root(value: Any) -> Path:
    if value is None or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError("missing")
    return Path(value).expanduser()


def _fraction(value: Any) -> float:
    value = float_in(0.0, 1.0)(value)
    if value >= 1.0:
        raise ValueError("must leave train images")
    return value


class Folder(BackgroundSource):
    """Backgrounds read from a user folder (see the module docstring)."""

    name = "folder"
    options = {
        "root": Option(None, _root, "a path to a folder of images"),
        "on_error": Option("raise", one_of("raise", "skip"), "'raise' or 'skip'"),
        "test_fraction": Option(0.1, _fraction, "a float in [0, 1)"),
        "fit": Option("crop", one_of("crop", "resize"), "'crop' or 'resize'"),
    }

    def _validate(self) -> None:
        root: Path = self.params["root"]
        if not root.is_dir():
            raise DataError(f"background folder {root} does not exist or is not a folder")
        files = list_images(root)
        if not files:
            raise DataError(f"background folder {root} holds no images ({', '.join(EXTENSIONS)})")
        n = len(files)
        f = self.params["test_fraction"]
        n_test = 0 if f == 0 or n < 2 else min(n - 1, max(1, round(f * n)))
        test_idx = {int(math.floor((k + 0.5) * n / n_test)) for k in range(n_test)}
        split_files = {
            "train": [p for i, p in enumerate(files) if i not in test_idx],
            "test": [p for i, p in enumerate(files) if i in test_idx],
        }
        order = np.random.default_rng([self.seed, 0xF01DE5])
        self._files = {s: [fs[i] for i in order.permutation(len(fs))] for s, fs in split_files.items()}

    def max_images(self, split: str = "train") -> int | None:
        """Number of image files in the split (an upper bound when files are skipped)."""
        self._check_split(split)
        return len(self._files[split])

    def files(self, split: str = "train") -> list[Path]:
        """The split's files in the order (seed-dependent) in which they are used."""
        self._check_split(split)
        return list(self._files[split])

    def _generate(self, n: int, split: str) -> Tensor:
        files = self._files[split]
        cursor = 0
        used: dict[bytes, Path] = {}
        out: list[Tensor] = []
        skipped = 0
        while len(out) < n:
            if cursor >= len(files):
                raise DataError(
                    f"background 'folder' {self.params['root']}: only {len(out)} usable {split!r} "
                    f"images ({skipped} skipped), asked for {n}"
                )
            path = files[cursor]
            cursor += 1
            try:
                side = self.size if self.params["fit"] == "crop" else 1 << 30  # only the square kept is read
                arr, (h, w) = read_region(path, crop=(side, side), square=True)
                if min(h, w) < self.patch:
                    raise DataError(f"image {path} is {w}x{h}, smaller than the patch {self.patch}")
            except DataError as exc:
                if self.params["on_error"] == "raise":
                    raise
                warnings.warn(f"skipping background: {exc}", stacklevel=3)
                skipped += 1
                continue
            img = self._fit(arr)
            key = image_digest(img)
            if key in used:
                warnings.warn(f"skipping background {path}: same pixels as {used[key]}", stacklevel=3)
                skipped += 1
                continue
            used[key] = path
            out.append(img)
        return torch.stack(out) if out else torch.empty(0, 3, self.size, self.size)

    def _fit(self, arr: np.ndarray) -> Tensor:
        h, w = arr.shape[:2]
        s, short = self.size, min(h, w)
        side = s if (self.params["fit"] == "crop" and short >= s) else short
        y, x = (h - side) // 2, (w - side) // 2
        crop = torch.from_numpy(np.ascontiguousarray(arr[y:y + side, x:x + side])).permute(2, 0, 1)
        return resize_square(crop[None].float(), s)[0].contiguous()

