"""Paired training data (a stateless, resumable stream) and fixed evaluation sets.

:class:`PairedStream` draws ``n_backgrounds`` background images once, then every step cuts a batch of random
crops/flips from them and degrades it with freshly sampled parameters. ``stream.batch(step)`` is a pure
function of (configuration, seed, step): a fresh generator is seeded from ``(seed, step)``, so training
resumes at any step with no saved state, and two workers never share random numbers::

    >>> stream = PairedStream("smooth", n_backgrounds=4, degradation={"type": "rain", "preset": "small"},
    ...                       patch=32, batch=8, seed=0)
    >>> b = stream.batch(12)
    >>> b.degraded.shape, bool((b.degraded == stream.batch(12).degraded).all())
    (torch.Size([8, 3, 32, 32]), True)

A share ``clean_fraction`` of every batch is left clean (degraded == clean, layer 0, masks 0, the
degradation params NaN and ``params["clean"]`` 1): the count per batch is ``floor(f * batch)`` plus one
with probability ``frac(f * batch)``, so the expected share is exactly ``f``.

:func:`evaluation_set` builds the fixed test data of a run: the same held-out ("test" split) backgrounds,
centre-cropped to ``patch``, under every named degradation split, each with its own seeded draw.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.data.degradations import make_degradation
from probe.data.types import DegradedBatch
from probe.errors import ConfigError

_STREAM_SALT = 0x5EED_0001
_EVAL_SALT = 0x5EED_0002


def step_generator(seed: int, step: int, salt: int = _STREAM_SALT) -> torch.Generator:
    """A CPU generator seeded from (salt, seed, step) through numpy's SeedSequence (well-mixed, stable)."""
    state = np.random.SeedSequence([salt, int(seed), int(step)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _check_int(owner: str, key: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ConfigError(f"{owner}: {key!r} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _center_crop(images: Tensor, patch: int) -> Tensor:
    h, w = images.shape[-2:]
    top, left = (h - patch) // 2, (w - patch) // 2
    return images[..., top:top + patch, left:left + patch].contiguous()


def _make_source(owner: str, background: str, patch: int, seed: int, options: Mapping[str, Any] | None):
    from probe.data.backgrounds import make_background

    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"{owner}: 'background_options' must be a table, got {options!r}")
    return make_background(background, patch, seed=seed, **dict(options or {}))


class PairedStream(torch.utils.data.IterableDataset):
    """Endless (degraded, clean, layer, mask, params) batches from a background source × a degradation spec.

    Parameters follow the ``[data]`` / ``[degradation]`` config tables: ``background`` (a registered source),
    ``n_backgrounds`` (distinct "train" images, fixed for the run), ``degradation`` (spec with ``type``),
    ``patch``, ``batch``, ``seed``, ``clean_fraction`` in [0, 1], ``background_options`` for the source.
    ``widen_degradation``, ``complexity_band`` and ``curriculum`` are paper B's balanced-complexity options
    (:mod:`probe.data.balance`; off by default). ``device`` (an addition to the contract) makes the crops
    and the synthesis run there (the background images are moved once); outputs are bit-identical per
    (seed, step) on the CPU.

    As a torch ``IterableDataset`` it yields ``batch(start_step)``, ``batch(start_step + 1)``, … (split
    between DataLoader workers by step; use ``DataLoader(stream, batch_size=None)``).
    """

    def __init__(self, background: str, n_backgrounds: int, degradation: Mapping[str, Any], patch: int, batch: int,
                 seed: int, clean_fraction: float = 0.1, background_options: Mapping[str, Any] | None = None,
                 device: str | torch.device = "cpu", start_step: int = 0, steps: int | None = None,
                 widen_degradation: Mapping[str, Any] | None = None, complexity_band: Any = None,
                 curriculum: int = 0):
        super().__init__()
        owner = "paired data"
        self.n_backgrounds = _check_int(owner, "n_backgrounds", n_backgrounds, 1)
        self.patch = _check_int(owner, "patch", patch, 1)
        self.batch_size = _check_int(owner, "batch", batch, 1)
        self.seed = _check_int(owner, "seed", seed, 0)
        self.start_step = _check_int(owner, "start_step", start_step, 0)
        self.steps = None if steps is None else _check_int(owner, "steps", steps, 0)
        if isinstance(clean_fraction, bool) or not isinstance(clean_fraction, (int, float)) \
                or not 0.0 <= float(clean_fraction) <= 1.0:
            raise ConfigError(f"{owner}: 'clean_fraction' must be a number in [0, 1], got {clean_fraction!r}")
        self.clean_fraction = float(clean_fraction)
        self.degradation = make_degradation(degradation)
        self.background = str(background)
        self.background_options = dict(background_options or {})
        self.device = torch.device(device)
        self.source = _make_source(owner, background, self.patch, self.seed, background_options)
        images = self.source.images(self.n_backgrounds, split="train")
        from probe.data.backgrounds import BackgroundPool

        self.pool = BackgroundPool(images.to(self.device), self.patch)
        self.balance = None  # paper B's remedy 1 (probe.data.balance), only when an option is set
        if widen_degradation or complexity_band or curriculum:
            from probe.data.balance import Balance

            self.balance = Balance(self.pool, self.degradation, self.seed, widen_degradation, complexity_band,
                                   curriculum)

    @property
    def images(self) -> Tensor:
        """The fixed (n_backgrounds, 3, S, S) background images."""
        return self.pool.images

    def batch(self, step: int) -> DegradedBatch:
        """The batch of ``step`` (a pure function of the configuration, the seed and ``step``)."""
        step = _check_int("paired data", "step", step, 0)
        g = step_generator(self.seed, step)
        if self.balance is None:
            out = self.degradation.apply(self.pool.sample(self.batch_size, g), g)
        else:
            out = self.balance.draw(step, self.batch_size, g)
        n = self.batch_size
        expected = self.clean_fraction * n
        k = int(math.floor(expected))
        if float(torch.rand((), generator=g, dtype=torch.float64)) < expected - k:
            k += 1
        is_clean = torch.zeros(n, dtype=torch.bool)
        is_clean[torch.randperm(n, generator=g)[:k]] = True
        return _leave_clean(out, is_clean.to(out.clean.device))

    def __iter__(self) -> Iterator[DegradedBatch]:
        worker = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if worker is None else (worker.id, worker.num_workers)
        step = self.start_step + first
        stop = None if self.steps is None else self.start_step + self.steps
        while stop is None or step < stop:
            yield self.batch(step)
            step += stride

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the stream (for run.json)."""
        return {"background": self.source.describe(), "n_backgrounds": self.n_backgrounds, "patch": self.patch,
                "batch": self.batch_size, "seed": self.seed, "clean_fraction": self.clean_fraction,
                "degradation": self.degradation.describe(),
                **({"balance": self.balance.describe()} if self.balance is not None else {})}


def _leave_clean(out: DegradedBatch, is_clean: Tensor) -> DegradedBatch:
    """Undo the degradation of the images flagged in ``is_clean`` (N,) bool."""
    keep = is_clean.view(-1, 1, 1, 1)
    zero = torch.zeros((), dtype=out.layer.dtype, device=out.layer.device)
    params = {k: torch.where(is_clean, torch.full_like(v, float("nan")), v) for k, v in out.params.items()}
    params["clean"] = is_clean.to(torch.float32)
    return DegradedBatch(
        degraded=torch.where(keep, out.clean, out.degraded), clean=out.clean,
        layer=torch.where(keep, zero, out.layer), mask=torch.where(keep, zero, out.mask),
        soft_mask=torch.where(keep, zero, out.soft_mask), params=params,
    )


def evaluation_info(config: Mapping[str, Any]) -> dict[str, Any]:
    """Which evaluation set a training config (``TrainConfig.to_dict()`` / ``run.json["config"]``) declares.

    The ``[eval]`` table wins; the background (and its options) default to the training source's held-out
    images, the patch to the training patch, the splits to the training degradation alone (``id``). The
    result is JSON (stored with every probe result) and its keys are :func:`evaluation_set`'s arguments::

        data = evaluation_set(**evaluation_info(config))
    """
    from probe.records import EvalSpec  # the one copy of the defaults

    return EvalSpec.from_config(config).to_dict()


def evaluation_set(background: str, splits: Mapping[str, Any], n_images: int, patch: int, seed: int,
                   background_options: Mapping[str, Any] | None = None) -> dict[str, DegradedBatch]:
    """Fixed evaluation data: ``{split name: DegradedBatch}`` with identical clean images in every split.

    The clean images are the first ``n_images`` of the source's held-out "test" split, centre-cropped to
    ``patch``; split ``name`` is degraded with a generator seeded from (seed, name), so adding or removing a
    split never changes the others.

    >>> data = evaluation_set("smooth", {"id": {"type": "rain", "preset": "small"},
    ...                                  "ood": {"type": "rain", "preset": "large"}}, n_images=2, patch=32, seed=0)
    >>> bool((data["id"].clean == data["ood"].clean).all()), sorted(data)
    (True, ['id', 'ood'])
    """
    owner = "evaluation set"
    n_images = _check_int(owner, "n_images", n_images, 1)
    patch = _check_int(owner, "patch", patch, 1)
    seed = _check_int(owner, "seed", seed, 0)
    if not isinstance(splits, Mapping) or not splits:
        raise ConfigError(f"{owner}: 'splits' must be a non-empty table of degradation specs, got {splits!r}")
    degradations = {}
    for name, spec in splits.items():
        try:
            degradations[str(name)] = make_degradation(spec)
        except ConfigError as exc:
            raise ConfigError(f"{owner}: split {name!r}: {exc}") from exc
    source = _make_source(owner, background, patch, seed, background_options)
    clean = _center_crop(source.images(n_images, split="test"), patch)
    out = {}
    for name, deg in degradations.items():
        g = step_generator(seed, zlib.crc32(name.encode()), salt=_EVAL_SALT)
        out[name] = deg.apply(clean.clone(), g)
    return out
