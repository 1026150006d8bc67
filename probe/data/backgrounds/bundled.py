"""Backgrounds from the images bundled with scikit-image (no download ever): faces, photos, textures.

* ``faces``: the 100 LFW faces of ``skimage.data.lfw_subset()`` (25 × 25 grey), resized to the image
  side and made RGB. Faces 0–79 form the train split (in a seed-dependent order), faces 80–99 the test
  split. At most 80 / 20 distinct images.
* ``natural``: square crops at random positions and scales from photographs. Train photos: astronaut,
  rocket, camera, motorcycle (left view), coins, hubble deep field; held-out test photos: chelsea and
  coffee, so evaluation backgrounds are never trained on. Unbounded.
* ``texture``: crops of the brick, grass and gravel textures; the left half of each texture is the train
  region, the right half the test region. Unbounded.

>>> from probe.data.backgrounds.bundled import Natural
>>> Natural(patch=32, seed=0).images(3, split="test").shape
torch.Size([3, 3, 64, 64])

Crop sides are ``size × scale`` with ``scale`` log-uniform in the ``scale`` option (clamped to the region),
resized to ``size``. Decoded images are cached once per process.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from probe.data.backgrounds.base import BackgroundSource, Option, float_pair, image_digest, resize_square
from probe.errors import DataError

NATURAL_TRAIN = ("astronaut", "rocket", "camera", "motorcycle_left", "coins")
NATURAL_TEST = ("chelsea", "coffee")
TEXTURES = ("brick", "grass", "gravel")
N_FACES, N_FACES_TEST = 100, 20


@lru_cache(maxsize=16)
def bundled_image(name: str) -> Tensor:
    """A bundled scikit-image picture as a (3, H, W) float32 tensor in [0, 1] (cached per process)."""
    import skimage.data

    if name == "motorcycle_left":
        arr = skimage.data.stereo_motorcycle()[0]
    else:
        fetch = getattr(skimage.data, name, None)
        if fetch is None:
            raise DataError(f"scikit-image has no bundled image {name!r}")
        arr = fetch()
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    img = torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).float() / 255.0
    return img.contiguous()


@lru_cache(maxsize=1)
def _faces() -> Tensor:
    import skimage.data

    faces = np.asarray(skimage.data.lfw_subset()[:N_FACES], dtype=np.float32)  # (100, 25, 25) in [0, 1]
    return torch.from_numpy(faces)[:, None].expand(-1, 3, -1, -1).contiguous()


class Faces(BackgroundSource):
    """LFW faces bundled with scikit-image (80 train / 20 held-out test), resized to ``size`` (default:
    the patch itself, so a face fills the patch)."""

    name = "faces"

    def default_size(self, patch: int) -> int:
        return patch

    def max_images(self, split: str = "train") -> int | None:
        self._check_split(split)
        return N_FACES - N_FACES_TEST if split == "train" else N_FACES_TEST

    def _order(self, split: str) -> np.ndarray:
        if split == "test":
            return np.arange(N_FACES - N_FACES_TEST, N_FACES)
        return np.random.default_rng([self.seed, 0xFACE]).permutation(N_FACES - N_FACES_TEST)

    def _generate(self, n: int, split: str) -> Tensor:
        idx = torch.from_numpy(self._order(split)[:n])
        return resize_square(_faces()[idx], self.size).contiguous()


class _Crops(BackgroundSource):
    """Square crops at random positions and scales from fixed regions of bundled images."""

    options = {
        "scale": Option((0.25, 1.0), float_pair(0.01, 1.0),
                        "a pair (lo, hi) with 0.01 <= lo <= hi <= 1 (crop side / shorter side of the picture)"),
    }

    def _regions(self, split: str) -> list[Tensor]:
        raise NotImplementedError

    def distinct_contents(self, n: int, split: str = "train") -> int:
        """Crops of a few pictures: at most as many distinct contents as pictures (5 natural train photos)."""
        self._check_split(split)
        return min(int(n), len(self._regions(split)))

    def _generate(self, n: int, split: str) -> Tensor:
        regions = self._regions(split)
        used: set[bytes] = set()
        lo, hi = np.log(self.params["scale"][0]), np.log(self.params["scale"][1])
        out = []
        for i in range(n):
            region = regions[i % len(regions)]  # round-robin over the pictures: balanced
            h, w = region.shape[-2:]
            rng = self._rng(split, i)
            for _attempt in range(1000):  # redraw a crop equal to an earlier one (rare): n distinct images
                side = int(round(min(h, w) * float(np.exp(rng.uniform(lo, hi)))))
                side = max(1, min(side, h, w))
                y = int(rng.integers(0, h - side + 1))
                x = int(rng.integers(0, w - side + 1))
                img = resize_square(region[None, :, y:y + side, x:x + side], self.size)[0].contiguous()
                key = image_digest(img)
                if key not in used:
                    break
            else:
                raise DataError(f"background {self.name!r}: cannot find a new distinct crop for image {i}")
            used.add(key)
            out.append(img)
        return torch.stack(out) if out else torch.empty(0, 3, self.size, self.size)


class Natural(_Crops):
    """Crops of bundled photographs; chelsea and coffee are held out for the test split."""

    name = "natural"

    def _regions(self, split: str) -> list[Tensor]:
        return [bundled_image(n) for n in (NATURAL_TRAIN if split == "train" else NATURAL_TEST)]


class Texture(_Crops):
    """Crops of the brick, grass and gravel textures: left halves train, right halves test."""

    name = "texture"

    def _regions(self, split: str) -> list[Tensor]:
        out = []
        for n in TEXTURES:
            img = bundled_image(n)
            half = img.shape[-1] // 2
            out.append(img[..., :half] if split == "train" else img[..., half:])
        return out
