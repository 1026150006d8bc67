"""Balanced-complexity training data (paper B's remedy 1): widened degradations, a complexity-matched
sampler and a curriculum over complexity, as options of :class:`probe.data.paired.PairedStream`.

Paper B (Hu et al. 2025, arXiv 2502.12600) explains the failure on unseen rain as shortcut learning: the
network fits whichever of {background, degradation} is less complex. When the training backgrounds are far
more complex than the rain, the rain is the shortcut and the network overfits it. B's first remedy is to
*balance* the two complexities so that the content becomes the thing to learn. Each option below is one key
of the ``[data]`` config table (the fourth variant, a mixture of background sources, is the ``mixture``
background source):

* ``widen_degradation`` (a degradation table, e.g. ``{type = "rain", preset = "random"}``; empty = off) —
  a share ``s = C_bg / (C_bg + C_deg)`` of the pairs is degraded with this wider range instead of the
  training range, ``C_bg`` and ``C_deg`` being the measured complexity of the training backgrounds and of the
  training-range degradation layer. The more complex the backgrounds relative to the rain, the more of the
  wide range: the degradation range is widened *relative to the background complexity*.
* ``complexity_band`` (``[lo, hi]``; empty = off) — a complexity-matched sampler: rounds of ``OVERSAMPLE``
  × batch candidate pairs are drawn until ``batch`` of them have a ratio ``C(B) / C(D)`` of background to
  degradation complexity inside the band (at most ``MAX_ROUNDS`` rounds); the batch keeps the in-band
  pairs in draw order, then (only if too few were found) the nearest ones in log ratio.
* ``curriculum`` (steps; 0 = off) — a curriculum over complexity: the backgrounds are ranked by measured
  complexity and step ``t`` samples from the simplest ``ceil(n * f(t))`` of them, ``f(t) = f0 + (1 - f0) *
  min(1, t / curriculum)`` with ``f0 = CURRICULUM_START``: the network meets simple content first (where
  learning the content is the easy solution) and complex content later.

Complexity is the mean luminance gradient magnitude (SCIENCE.md's "mean gradient magnitude"; equal to
:func:`probe.data.complexity.gradient_magnitude` per image), for the background and for the degradation
layer ``D = O - B`` alike, so the two sides are on one scale. Every random number comes from the step's
generator, so ``PairedStream.batch(step)`` stays a pure function of (config, seed, step).

>>> import torch
>>> from probe.data.balance import gradient_complexity
>>> bool(gradient_complexity(torch.zeros(2, 3, 8, 8)).eq(0).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.data.types import DegradedBatch
from probe.errors import ConfigError

CURRICULUM_START = 0.25  # share of the (simplest) backgrounds available at step 0
OVERSAMPLE = 4  # candidate pairs per batch item and round for the complexity-matched sampler
MAX_ROUNDS = 8  # rounds of candidates before the nearest pairs fill the batch
_LUMA = (0.299, 0.587, 0.114)
_CALIBRATION_SALT = 0x5EED_0003


def gradient_complexity(images: Tensor) -> Tensor:
    """Mean luminance gradient magnitude per image: (N, 3, H, W) → (N,) float64, >= 0.

    Central differences in the interior and one-sided ones at the border (``numpy.gradient``), on BT.601
    luminance; the layer of a degradation (which may be negative) is scored the same way.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"gradient_complexity: expected (N, 3, H, W), got {tuple(images.shape)}")
    luma = torch.tensordot(images.double(), images.new_tensor(_LUMA, dtype=torch.float64), dims=([1], [0]))
    if min(luma.shape[-2:]) < 2:
        return torch.zeros(luma.shape[0], dtype=torch.float64, device=images.device)
    gy, gx = torch.gradient(luma, dim=(-2, -1))
    return torch.hypot(gx, gy).flatten(1).mean(1)


def check_options(widen_degradation: Any, complexity_band: Any, curriculum: Any) -> tuple[dict, tuple, int]:
    """Validate the three options (see the module docstring); returns them normalised.

    Raises :class:`~probe.errors.ConfigError` naming the key and the allowed values.
    """
    from probe.data.degradations import make_degradation

    if not isinstance(widen_degradation, (Mapping, type(None))):
        raise ConfigError(f"data.widen_degradation = {widen_degradation!r} must be a degradation table "
                          "(e.g. {type = \"rain\", preset = \"random\"}) or empty")
    widen = dict(widen_degradation or {})
    if widen:
        try:
            make_degradation(widen)
        except ConfigError as exc:
            raise ConfigError(f"data.widen_degradation: {exc}") from exc
    band: tuple[float, ...] = ()
    if complexity_band not in (None, [], ()):
        ok = isinstance(complexity_band, Sequence) and not isinstance(complexity_band, str) \
            and len(complexity_band) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in complexity_band)
        if not ok or not 0 < complexity_band[0] <= complexity_band[1] or not math.isfinite(complexity_band[1]):
            raise ConfigError(f"data.complexity_band = {complexity_band!r} must be [lo, hi] with "
                              "0 < lo <= hi (ratio of background to degradation complexity) or empty")
        band = (float(complexity_band[0]), float(complexity_band[1]))
    if isinstance(curriculum, bool) or not isinstance(curriculum, (int, np.integer)) or curriculum < 0:
        raise ConfigError(f"data.curriculum = {curriculum!r} must be an integer >= 0 (steps; 0 = off)")
    return widen, band, int(curriculum)


class Balance:
    """Draws a batch of pairs under the balanced-complexity options (used by ``PairedStream``).

    ``pool`` is the stream's :class:`~probe.data.backgrounds.BackgroundPool`, ``degradation`` its training
    degradation, ``seed`` the run seed (it seeds the one-off calibration of ``C_deg``).
    """

    def __init__(self, pool: Any, degradation: Any, seed: int, widen_degradation: Mapping[str, Any] | None = None,
                 complexity_band: Sequence[float] | None = None, curriculum: int = 0,
                 oversample: int = OVERSAMPLE):
        from probe.data.backgrounds import BackgroundPool
        from probe.data.degradations import make_degradation
        from probe.data.paired import step_generator

        widen, self.band, self.curriculum = check_options(widen_degradation, complexity_band, curriculum)
        self.pool = pool
        self.degradation = degradation
        self.oversample = int(oversample)
        self.wide = None
        self.share = 0.0
        images = pool.images
        scores = gradient_complexity(images)
        self.background_complexity = float(scores.mean())
        if widen:
            self.wide = make_degradation(widen)
            if self.wide.describe().get("type") != degradation.describe().get("type"):
                raise ConfigError(f"data.widen_degradation: type {widen.get('type')!r} differs from the "
                                  f"training degradation's {degradation.describe().get('type')!r}")
            grey = torch.full((16, 3, pool.patch, pool.patch), 0.5, device=images.device)
            calib = degradation.apply(grey, step_generator(seed, 0, salt=_CALIBRATION_SALT))
            self.degradation_complexity = float(gradient_complexity(calib.degraded - calib.clean).mean())
            total = self.background_complexity + self.degradation_complexity
            self.share = self.background_complexity / total if total > 0 else 0.0
        self.sorted_pool = None
        if self.curriculum:
            order = torch.from_numpy(np.lexsort((np.arange(len(scores)), scores.cpu().numpy())))
            self.sorted_pool = BackgroundPool(images[order.to(images.device)].contiguous(), pool.patch)

    def available(self, step: int) -> int:
        """How many of the (complexity-sorted) backgrounds the curriculum allows at ``step`` (monotone)."""
        n = len(self.pool)
        if not self.curriculum:
            return n
        frac = CURRICULUM_START + (1 - CURRICULUM_START) * min(1.0, step / self.curriculum)
        return max(1, min(n, math.ceil(n * frac - 1e-9)))

    def draw(self, step: int, batch: int, g: torch.Generator) -> DegradedBatch:
        """The degraded pairs of one batch (before the clean share is applied)."""
        from probe.data.backgrounds import BackgroundPool

        pool = self.pool
        if self.sorted_pool is not None:
            pool = BackgroundPool(self.sorted_pool.images[:self.available(step)], self.pool.patch)
        if not self.band:
            return self._degrade(pool.sample(batch, g), g)
        lo, hi = self.band
        drawn, in_band = [], 0
        for _ in range(MAX_ROUNDS):  # rejection sampling, bounded: then the nearest pairs fill the batch
            out = self._degrade(pool.sample(batch * self.oversample, g), g)
            ratio = (gradient_complexity(out.clean)
                     / gradient_complexity(out.degraded - out.clean).clamp_min(1e-12)).cpu()
            drawn.append((out, ratio))
            in_band += int(((ratio >= lo) & (ratio <= hi)).sum())
            if in_band >= batch:
                break
        out = DegradedBatch.cat([d for d, _ in drawn]) if len(drawn) > 1 else drawn[0][0]
        ratio = torch.cat([r for _, r in drawn])
        log_r = torch.log(ratio.clamp_min(1e-12))
        distance = torch.clamp(math.log(lo) - log_r, min=0) + torch.clamp(log_r - math.log(hi), min=0)
        order = torch.from_numpy(np.lexsort((np.arange(len(ratio)), distance.numpy())))[:batch]
        chosen = _take(out, order)
        chosen.params["complexity_ratio"] = ratio[order].float()
        return chosen

    def _degrade(self, clean: Tensor, g: torch.Generator) -> DegradedBatch:
        if self.wide is None:
            return self.degradation.apply(clean, g)
        wide = torch.rand(len(clean), generator=g) < self.share
        parts, rows = [], []
        for flag, deg in ((False, self.degradation), (True, self.wide)):
            idx = torch.nonzero(wide == flag).flatten()
            if len(idx):
                part = deg.apply(clean[idx.to(clean.device)], g)
                part.params["widened"] = torch.full((len(idx),), float(flag))
                parts.append(part)
                rows.append(idx)
        out = DegradedBatch.cat(parts) if len(parts) > 1 else parts[0]
        return _take(out, torch.argsort(torch.cat(rows)))

    def describe(self) -> dict[str, Any]:
        """JSON-able settings and calibrated quantities (for run.json)."""
        out: dict[str, Any] = {"background_complexity": self.background_complexity}
        if self.wide is not None:
            out.update(widen_degradation=self.wide.describe(), widen_share=self.share,
                       degradation_complexity=self.degradation_complexity)
        if self.band:
            out.update(complexity_band=list(self.band), oversample=self.oversample)
        if self.curriculum:
            out.update(curriculum=self.curriculum, curriculum_start=CURRICULUM_START)
        return out


def _take(batch: DegradedBatch, index: Tensor) -> DegradedBatch:
    """Rows ``index`` (a CPU int64 tensor) of every tensor of ``batch``, each on its own device."""
    import dataclasses

    def pick(t: Tensor) -> Tensor:
        return t[index.to(t.device)]

    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return DegradedBatch(**{k: ({p: pick(v) for p, v in val.items()} if isinstance(val, dict) else pick(val))
                            for k, val in fields.items()})
