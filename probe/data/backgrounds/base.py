"""The background-source contract and the crop/flip pool that training samples from.

A :class:`BackgroundSource` turns ``(patch, seed, **options)`` into *exactly n distinct* RGB images::

    >>> from probe.data.backgrounds import make_background
    >>> src = make_background("smooth", patch=32, seed=0)
    >>> imgs = src.images(4)                      # (4, 3, 64, 64) float32 in [0, 1]
    >>> bool((src.images(2) == imgs[:2]).all())   # nested: a prefix of a longer draw
    True

and a :class:`BackgroundPool` cuts random ``patch`` crops (with flips) out of them at every training step::

    >>> import torch
    >>> pool = BackgroundPool(imgs, patch=32)
    >>> pool.sample(8, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])

Writing a new source: subclass :class:`BackgroundSource`, declare its options in ``options`` (name →
:class:`Option`), implement ``_generate(n, split)`` returning the first ``n`` images of the split (a
deterministic, sequential process, so prefixes agree), and optionally ``max_images`` / ``default_size``.
Sources keep no image cache: every call returns a fresh tensor owned by the caller. Register it with one line in
``probe/data/backgrounds/__init__.py``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from probe.errors import ConfigError, DataError
from probe.registry import check_once

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Option:
    """One declared option of a source: its default, a converter/validator and a human description.

    ``check(value)`` returns the normalised value or raises ``ValueError``/``TypeError``; the source turns
    that into a :class:`~probe.errors.ConfigError` naming the option and ``allowed``.
    """

    default: Any
    check: Callable[[Any], Any]
    allowed: str


# ---- small validators used by the option declarations -------------------------------------------------
def float_in(lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError("not a number")
        value = float(value)
        if not (lo <= value <= hi):
            raise ValueError("out of range")
        return value

    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def int_at_least(lo: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError("not an integer")
        if int(value) < lo:
            raise ValueError("too small")
        return int(value)

    return check


def one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("not allowed")
        return str(value)

    return check


def float_pair(lo: float, hi: float) -> Callable[[Any], tuple[float, float]]:
    def check(value: Any) -> tuple[float, float]:
        if isinstance(value, (str, bytes)) or len(value) != 2:
            raise ValueError("not a pair")
        a, b = (float_in(lo, hi)(v) for v in value)
        if a > b:
            raise ValueError("unordered")
        return a, b

    return check


class BackgroundSource:
    """Base class of every background source (see the module docstring for the contract).

    Parameters
    ----------
    patch : int
        The training patch size; returned images have side ``S = size`` (default :meth:`default_size`),
        always ``S >= patch``.
    seed : int
        Picks *which* images are drawn (same seed → bit-identical images). The train/test split never
        depends on the seed, so training with one seed and evaluating with another never mixes them.
    **options
        Source-specific options (see the class's ``options``); every source accepts ``size``.
    """

    name: ClassVar[str] = "background"
    options: ClassVar[dict[str, Option]] = {}
    _common_options: ClassVar[dict[str, Option]] = {
        "size": Option(None, optional(int_at_least(1)), "None or an int >= patch (side of the images)"),
    }

    def __init__(self, patch: int, seed: int = 0, **options: Any):
        if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
            raise ConfigError(f"background {self.name!r}: patch must be a positive int, got {patch!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"background {self.name!r}: seed must be a non-negative int, got {seed!r}")
        self.patch = int(patch)
        self.seed = int(seed)
        resolved = self.check_options(options)
        self.params = resolved
        size = resolved["size"]
        self.size = int(self.default_size(self.patch) if size is None else size)
        if self.size < self.patch:
            raise ConfigError(
                f"background {self.name!r}: option 'size' must be >= patch ({self.patch}), got {self.size}"
            )
        self._validate()

    # ---- declared parameters -----------------------------------------------------------------------------
    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        """Every option the source accepts (``size`` and the class's ``options``), name → :class:`Option`."""
        return {**cls._common_options, **cls.options}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``options`` against the declared constraints alone (no files read, no images drawn) and
        return every declared option resolved (defaults filled in, values normalised).

        Raises :class:`~probe.errors.ConfigError` naming the source, the option and what it accepts: an unknown
        option lists the allowed ones (and which registered sources do declare it, e.g. ``complexity``)."""
        if not isinstance(options, Mapping):
            raise ConfigError(f"background {cls.name!r}: options must be a table, got {options!r}")
        declared = cls.declared_options()
        unknown = sorted(set(options) - set(declared), key=str)
        if unknown:
            raise ConfigError(f"background {cls.name!r}: unknown option {unknown[0]!r}; allowed: "
                              f"{', '.join(sorted(declared))}{_declared_elsewhere(unknown[0])}")
        resolved: dict[str, Any] = {}
        for key, opt in declared.items():
            value = options.get(key, opt.default)
            try:
                resolved[key] = opt.check(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"background {cls.name!r}: option {key!r} must be {opt.allowed}, got {value!r}"
                                  ) from exc
        return resolved

    # ---- hooks for subclasses ---------------------------------------------------------------------------
    def default_size(self, patch: int) -> int:
        """Side of the returned images when ``size`` is not given (2 × patch: room for random crops)."""
        return 2 * patch

    def max_images(self, split: str = "train") -> int | None:
        """How many distinct images the split can give (``None`` = unbounded)."""
        self._check_split(split)
        return None

    def distinct_contents(self, n: int, split: str = "train") -> int:
        """How many distinct underlying contents ``images(n, split)`` shows: ``n`` for sources whose every
        image is a new scene (procedural, faces, folders); fewer for crops of a few pictures."""
        self._check_split(split)
        return int(n)

    def _validate(self) -> None:
        """Cross-option checks after ``self.params`` is resolved (raise ConfigError/DataError)."""

    def _generate(self, n: int, split: str) -> Tensor:
        """The first ``n`` images of ``split`` as (n, 3, S, S) float32 in [0, 1]."""
        raise NotImplementedError

    # ---- public API --------------------------------------------------------------------------------------
    def images(self, n: int, split: str = "train") -> Tensor:
        """Exactly ``n`` distinct images of ``split``: a (n, 3, S, S) float32 tensor in [0, 1].

        Deterministic in (seed, split) and nested: ``images(n)`` equals ``images(n + k)[:n]``.
        """
        self._check_split(split)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"background {self.name!r}: number of images must be an int >= 0, got {n!r}")
        n = int(n)
        limit = self.max_images(split)
        if limit is not None and n > limit:
            raise DataError(
                f"background {self.name!r} has only {limit} distinct {split!r} images, asked for {n}"
            )
        if n == 0:
            return torch.empty(0, 3, self.size, self.size)
        out = self._generate(n, split)
        expected = (n, 3, self.size, self.size)
        if tuple(out.shape) != expected or out.dtype != torch.float32:  # a bug in the source, not user input
            raise RuntimeError(f"background {self.name!r} produced {tuple(out.shape)} {out.dtype}, "
                               f"expected {expected} float32")
        out = out.clamp_(0.0, 1.0).contiguous()
        _check_distinct(self.name, out)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able description (name, patch, seed, size and resolved options)."""
        opts = {k: _jsonable(v) for k, v in self.params.items()}
        opts["size"] = self.size
        return {"name": self.name, "patch": self.patch, "seed": self.seed, "options": opts}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if v is not None)
        return f"{type(self).__name__}(patch={self.patch}, seed={self.seed}{', ' if opts else ''}{opts})"

    # ---- helpers for subclasses --------------------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"background {self.name!r}: split must be 'train' or 'test', got {split!r}")

    def _rng(self, split: str, index: int) -> np.random.Generator:
        """An independent random stream per (source, seed, split, image index): draws are nested by design
        and the train and test streams never coincide, whatever the seeds."""
        salt = zlib.crc32(type(self).__name__.encode())
        return np.random.default_rng([salt, self.seed, SPLITS.index(split), index])


def _declared_elsewhere(option: Any) -> str:
    """``" ('complexity' is an option of dead_leaves)"`` when other registered sources declare ``option``."""
    from probe.data.backgrounds import BACKGROUNDS

    owners = []
    for name in BACKGROUNDS.names():
        try:
            if option in BACKGROUNDS.get(name).declared_options():
                owners.append(name)
        except Exception:  # a broken registry entry must not hide the user's error
            continue
    return f" ({option!r} is an option of {', '.join(owners)})" if owners else ""


@check_once
def _build_background(name: str, patch: int, options: dict[str, Any]) -> None:
    from probe.data.backgrounds import make_background

    make_background(name, patch, seed=0, **options)


def check_background(name: str, patch: int, options: Mapping[str, Any] | None = None) -> None:
    """Refuse, before anything trains, a background source every run would fail to build.

    Builds the source once per distinct ``(name, patch, options)`` (:func:`probe.registry.check_once`: a grid of
    100,000 cells over a few option values builds a few sources): the declared constraints
    (:meth:`BackgroundSource.check_options`) and the source's own cross checks (a ``folder`` root that exists and
    holds images, a ``mixture``'s sources and their options). No image is drawn. Raises
    :class:`~probe.errors.ConfigError` (unknown name or option, bad value) or :class:`~probe.errors.DataError`
    (e.g. a missing folder), naming the source and the option."""
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"background {name!r}: options must be a table, got {options!r}")
    _build_background(str(name), int(patch), dict(options or {}))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def image_digest(image: Tensor) -> bytes:
    """A content hash of one image (used to guarantee *distinct* images)."""
    return hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=16).digest()


def _check_distinct(name: str, images: Tensor) -> None:
    digests: dict[bytes, int] = {}
    for i, img in enumerate(images):
        key = image_digest(img)
        if key in digests:  # procedural/bundled sources guarantee distinctness; this guards against bugs
            raise RuntimeError(f"background {name!r}: image {i} duplicates image {digests[key]}")
        digests[key] = i


def resize_square(images: Tensor, size: int) -> Tensor:
    """Resize (N, C, h, w) float images to (N, C, size, size) (bicubic when enlarging, antialiased area-like
    bilinear when shrinking), clamped to [0, 1]."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < min(images.shape[-2:])
    out = torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear" if shrink else "bicubic", align_corners=False,
        antialias=shrink,
    )
    return out.clamp_(0.0, 1.0)


class BackgroundPool:
    """Random ``patch`` crops with horizontal/vertical flips from a fixed set of background images.

    ``images`` is an (N, 3, H, W) tensor (on any device) with ``H, W >= patch``; :meth:`sample` gathers a
    whole batch with one indexing operation (no per-image Python loop). Deterministic for the generator.
    """

    def __init__(self, images: Tensor, patch: int):
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise DataError(f"BackgroundPool: images must be an (N, 3, H, W) tensor, got {shape}")
        if images.shape[0] < 1:
            raise DataError("BackgroundPool: no images to sample from")
        if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1:
            raise ConfigError(f"BackgroundPool: patch must be a positive int, got {patch!r}")
        if min(images.shape[-2:]) < patch:
            raise DataError(f"BackgroundPool: images of {tuple(images.shape[-2:])} are smaller than patch {patch}")
        self.images = images
        self.patch = int(patch)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """A (batch, 3, patch, patch) tensor of random crops, each flipped at random horizontally and
        vertically. All random numbers come from ``generator`` (a CPU generator)."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 0:
            raise ConfigError(f"BackgroundPool: batch must be an int >= 0, got {batch!r}")
        n, _, h, w = self.images.shape
        p = self.patch
        g = generator
        idx = torch.randint(n, (batch,), generator=g)
        y0 = torch.randint(h - p + 1, (batch,), generator=g)
        x0 = torch.randint(w - p + 1, (batch,), generator=g)
        flips = torch.randint(2, (batch, 2), generator=g).bool()
        ar = torch.arange(p)
        rows = y0[:, None] + torch.where(flips[:, :1], p - 1 - ar, ar)  # vertical flip = reversed rows
        cols = x0[:, None] + torch.where(flips[:, 1:], p - 1 - ar, ar)  # horizontal flip = reversed cols
        dev = self.images.device
        idx, rows, cols = idx.to(dev), rows.to(dev), cols.to(dev)
        # rows first (one advanced index on a (N, H, 3, W) view), then one gather along the columns
        band = self.images.permute(0, 2, 1, 3)[idx[:, None], rows]  # (batch, p, 3, W)
        out = torch.gather(band, 3, cols[:, None, None, :].expand(-1, p, 3, -1))
        return out.permute(0, 2, 1, 3).contiguous()
