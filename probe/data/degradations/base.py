"""The degradation contract and the parameter-range helpers every degradation shares.

A degradation is built from a spec (the TOML table minus ``type``), validates every key at construction
(one :class:`~probe.errors.ConfigError` naming the key and what is allowed) and synthesises a batch::

    >>> import torch
    >>> from probe.data.degradations import make_degradation
    >>> rain = make_degradation({"type": "rain", "preset": "small", "angle": [[-30, -20], [20, 30]]})
    >>> out = rain.apply(torch.rand(4, 3, 64, 64), torch.Generator().manual_seed(0))
    >>> bool((out.degraded == (out.clean + out.layer).clamp(0, 1)).all())
    True
    >>> sorted(out.params)
    ['amount', 'amount_px', 'angle', 'beta', 'length', 'length_px', 'streak_px', 'width', 'width_px']

New degradation: subclass :class:`Degradation`, list its spec keys in ``keys`` (and ``presets``), parse them
in ``_configure`` with the helpers below (:meth:`Uniform.parse`, :meth:`Choice.parse`, :meth:`Intervals.parse`),
implement ``sample_params`` and ``synthesize``, set ``decomposition``, register it in ``__init__.py``.

All random numbers come from the CPU ``torch.Generator`` passed to :meth:`Degradation.apply`, so a seed gives
bit-identical batches on the CPU; large tensors are built directly on the device of the images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from probe.data.types import DegradedBatch
from probe.errors import ConfigError, DataError

Number = (int, float, np.integer, np.floating)


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value))


def _bounds_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "finite"


# ---- parameter distributions ------------------------------------------------------------------------------
class Uniform:
    """A continuous range ``[lo, hi]`` sampled uniformly (``lo == hi`` is a constant).

    >>> beta = Uniform.parse("rain", "beta", [0.6, 1.0])
    >>> bool(beta.contains(beta.sample(100, torch.Generator().manual_seed(0))).all())
    True
    """

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = float(lo), float(hi)

    @classmethod
    def parse(cls, owner: str, key: str, value: Any, lo: float | None = None, hi: float | None = None,
              unit: str = "") -> Uniform:
        """``value`` is a number or ``[lo, hi]`` with ``lo <= hi``, both within the allowed bounds."""
        allowed = f"a number or [lo, hi] with lo <= hi, {_bounds_text(lo, hi)}{unit}"
        if _is_number(value):
            pair = [float(value), float(value)]
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2 \
                and all(_is_number(v) for v in value):
            pair = [float(v) for v in value]
        else:
            raise ConfigError(f"{owner}: {key!r} must be {allowed}, got {value!r}")
        if pair[0] > pair[1]:
            raise ConfigError(f"{owner}: {key!r} must have lo <= hi, got {value!r} ({allowed})")
        if (lo is not None and pair[0] < lo) or (hi is not None and pair[1] > hi):
            raise ConfigError(f"{owner}: {key!r} must be {allowed}, got {value!r}")
        return cls(*pair)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n,) float64 CPU tensor (always consumes n uniform draws, even for a constant)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return self.lo + (self.hi - self.lo) * u

    def contains(self, x: Tensor) -> Tensor:
        return (x >= self.lo) & (x <= self.hi)

    def describe(self) -> list[float]:
        return [self.lo, self.hi]

    def __repr__(self) -> str:
        return f"Uniform({self.lo:g}, {self.hi:g})"


class Choice:
    """A finite set of values drawn with given probabilities (uniform when none are given).

    >>> width = Choice.parse("rain", "width", {"values": [3, 5, 7], "probs": [0.25, 0.5, 0.25]})
    >>> sorted(set(width.sample(200, torch.Generator().manual_seed(0)).tolist()))
    [3.0, 5.0, 7.0]
    """

    def __init__(self, values: Sequence[float], probs: Sequence[float] | None = None):
        self.values = [float(v) for v in values]
        p = [1.0] * len(self.values) if probs is None else [float(q) for q in probs]
        total = sum(p)
        self.probs = [q / total for q in p]
        self._cdf = torch.tensor(np.cumsum(self.probs), dtype=torch.float64)
        self._cdf[-1] = 1.0 + 1e-9  # guard against rounding: every u < 1 lands in a bucket
        self._values = torch.tensor(self.values, dtype=torch.float64)

    @classmethod
    def parse(cls, owner: str, key: str, value: Any, check: Any = None, allowed_values: str = "numbers") -> Choice:
        """``value`` is ``[v1, v2, ...]`` (uniform) or ``{values = [...], probs = [...]}`` (probs >= 0, sum 1).

        ``check(v) -> bool`` validates each value; ``allowed_values`` describes what it accepts.
        """
        allowed = f"[v1, v2, ...] or {{values = [...], probs = [...]}} of {allowed_values}"
        probs = None
        if isinstance(value, Mapping):
            extra = sorted(set(value) - {"values", "probs"})
            if extra or "values" not in value:
                bad = extra[0] if extra else "values"
                raise ConfigError(f"{owner}: {key!r} table needs 'values' and optional 'probs' "
                                  f"(unexpected or missing {bad!r}); allowed: {allowed}")
            values, probs = value["values"], value.get("probs")
        elif _is_number(value):
            values = [value]
        else:
            values = value
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0 \
                or not all(_is_number(v) for v in values):
            raise ConfigError(f"{owner}: {key!r} must be {allowed}, got {value!r}")
        if check is not None:
            for v in values:
                if not check(v):
                    raise ConfigError(f"{owner}: {key!r} value {v!r} is not allowed; values must be {allowed_values}")
        if len(set(float(v) for v in values)) != len(values):
            raise ConfigError(f"{owner}: {key!r} values must be distinct, got {list(values)!r}")
        if probs is not None:
            if isinstance(probs, (str, bytes)) or not isinstance(probs, Sequence) or len(probs) != len(values) \
                    or not all(_is_number(q) and float(q) >= 0 for q in probs):
                raise ConfigError(f"{owner}: {key!r} probs must be {len(values)} numbers >= 0 (one per value), "
                                  f"got {probs!r}")
            if abs(sum(float(q) for q in probs) - 1.0) > 1e-6:
                raise ConfigError(f"{owner}: {key!r} probs must sum to 1, got {list(probs)!r}")
        return cls(values, probs)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n,) float64 CPU tensor of values (consumes n uniform draws)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        index = torch.searchsorted(self._cdf, u, right=True).clamp_(max=len(self.values) - 1)
        return self._values[index]

    def contains(self, x: Tensor) -> Tensor:
        allowed = torch.tensor([v for v, p in zip(self.values, self.probs) if p > 0], dtype=x.dtype)
        return torch.isin(x, allowed)

    def describe(self) -> dict[str, list[float]]:
        return {"values": [int(v) if v.is_integer() else v for v in self.values], "probs": list(self.probs)}

    def __repr__(self) -> str:
        return f"Choice({self.values}, {self.probs})"


class Intervals:
    """A union of disjoint intervals: pick one with probability proportional to its width, then uniform
    inside it, so a draw never falls in a gap. Zero-width intervals are points with zero probability unless
    every interval is a point (then they are equally likely).

    >>> g = torch.Generator().manual_seed(0)
    >>> a = Intervals([(-30, -20), (20, 30)]).sample(1000, g)
    >>> bool(((a.abs() >= 20) & (a.abs() <= 30)).all())
    True
    """

    def __init__(self, intervals: Sequence[tuple[float, float]]):
        self.intervals = [(float(a), float(b)) for a, b in sorted(intervals)]
        w = self.widths
        total = sum(w)
        self._which = Choice(list(range(len(w))), [x / total for x in w] if total > 0 else None)
        self._lo = torch.tensor([a for a, _ in self.intervals], dtype=torch.float64)
        self._width = torch.tensor(w, dtype=torch.float64)

    @classmethod
    def parse(cls, owner: str, key: str, value: Any, lo: float | None = None, hi: float | None = None,
              unit: str = "") -> Intervals:
        """``value`` is a number, ``[lo, hi]`` or ``[[lo, hi], [lo, hi], ...]`` (non-overlapping)."""
        allowed = f"[lo, hi] or [[lo, hi], [lo, hi], ...] of disjoint intervals {_bounds_text(lo, hi)}{unit}"
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) > 0 \
                and all(isinstance(v, Sequence) and not isinstance(v, (str, bytes)) for v in value):
            items = list(value)
        else:
            items = [value]
        pairs = []
        for item in items:
            try:
                u = Uniform.parse(owner, key, item, lo, hi, unit)
            except ConfigError as exc:
                raise ConfigError(f"{owner}: {key!r} must be {allowed}, got {value!r} "
                                  f"({str(exc).split(': ', 1)[-1]})") from exc
            pairs.append((u.lo, u.hi))
        pairs.sort()
        for (a0, a1), (b0, b1) in zip(pairs, pairs[1:]):
            if b0 < a1:
                raise ConfigError(f"{owner}: {key!r} intervals [{a0:g}, {a1:g}] and [{b0:g}, {b1:g}] overlap; "
                                  f"allowed: {allowed}")
        return cls(pairs)

    @property
    def widths(self) -> list[float]:
        return [b - a for a, b in self.intervals]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n,) float64 CPU tensor (consumes 2n uniform draws: interval, then position)."""
        which = self._which.sample(n, generator).long()
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        lo, width = self._lo[which], self._width[which]
        return torch.minimum(lo + width * u, lo + width)

    def contains(self, x: Tensor) -> Tensor:
        inside = torch.zeros_like(x, dtype=torch.bool)
        for a, b in self.intervals:
            inside |= (x >= a) & (x <= b)
        return inside

    def describe(self) -> list[list[float]]:
        return [[a, b] for a, b in self.intervals]

    def __repr__(self) -> str:
        return f"Intervals({self.intervals})"


def parse_bool(owner: str, key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}: {key!r} must be true or false, got {value!r}")
    return bool(value)


def parse_kind(owner: str, key: str, value: Any, kinds: Sequence[str]) -> str:
    if value not in kinds:
        raise ConfigError(f"{owner}: {key!r} must be one of {', '.join(map(repr, kinds))}, got {value!r}")
    return str(value)


# ---- the degradation base class ---------------------------------------------------------------------------
class Degradation:
    """Base class: ``Deg(**spec)`` validates; :meth:`apply` synthesises a :class:`DegradedBatch`.

    ``spec`` may hold ``preset`` (one of ``presets``; ``default_preset`` when omitted) and any key of
    ``keys``; explicit keys override the preset's values. ``type`` is accepted when it names this class.
    Subclasses implement ``_configure(resolved)``, ``sample_params`` and ``synthesize``.
    """

    name: ClassVar[str] = "degradation"
    keys: ClassVar[tuple[str, ...]] = ()
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    default_preset: ClassVar[str | None] = None
    #: the ``decomposition`` probe's content split for it (probe.probes.decompositions): rain | noise | blur
    decomposition: ClassVar[str] = "rain"

    def __init__(self, **spec: Any):
        owner = self.name
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind is not None and str(kind).lower() != self.name:
            raise ConfigError(f"{owner}: 'type' is {kind!r} but this degradation is {self.name!r}")
        allowed = sorted({*self.keys, *(["preset"] if self.presets else [])})
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise ConfigError(f"{owner}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
        preset = spec.pop("preset", None)
        if preset is None:
            preset = self.default_preset
        if preset is not None and (not isinstance(preset, str) or preset not in self.presets):
            raise ConfigError(f"{owner}: unknown preset {preset!r}; allowed: {', '.join(self.presets)}")
        self.preset: str | None = preset
        self.spec: dict[str, Any] = dict(spec)
        self._configure(self._resolve(preset, spec))

    def _resolve(self, preset: str | None, spec: dict[str, Any]) -> dict[str, Any]:
        """Preset values overlaid with explicit keys (subclasses may special-case, e.g. per-kind presets)."""
        return {**(self.presets.get(preset, {}) if preset else {}), **spec}

    def _configure(self, resolved: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- public API ---------------------------------------------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Per-image parameters: ``{name: (n,) float64 CPU tensor}`` drawn from ``generator``."""
        raise NotImplementedError

    def synthesize(self, clean: Tensor, params: dict[str, Tensor], generator: torch.Generator) -> DegradedBatch:
        """Degrade ``clean`` with given per-image ``params`` (the remaining randomness from ``generator``)."""
        raise NotImplementedError

    def apply(self, clean: Tensor, generator: torch.Generator) -> DegradedBatch:
        """Degrade an (N, 3, H, W) float batch in [0, 1] on its own device; ``generator`` is a CPU generator.

        Same generator state → bit-identical output on the CPU. Parameters come first from the generator, then
        the rest of the randomness (rain seeds, noise), so :meth:`sample_params` + :meth:`synthesize` with the
        same generator reproduces :meth:`apply`.
        """
        check_images(self.name, clean)
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise ConfigError(f"{self.name}: generator must be a CPU torch.Generator, got {generator!r}")
        params = self.sample_params(int(clean.shape[0]), generator)
        return self.synthesize(clean, params, generator)

    def describe(self) -> dict[str, Any]:
        """Resolved, JSON-able description: ``{"type", "preset", <key>: range/choice/intervals, ...}``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        preset = f"preset={self.preset!r}, " if self.preset else ""
        extra = ", ".join(f"{k}={v!r}" for k, v in self.spec.items())
        return f"{type(self).__name__}({preset}{extra})"


def check_images(owner: str, clean: Any) -> None:
    if not isinstance(clean, Tensor) or clean.ndim != 4 or clean.shape[1] != 3:
        shape = tuple(clean.shape) if isinstance(clean, Tensor) else type(clean).__name__
        raise DataError(f"{owner}: images must be an (N, 3, H, W) tensor, got {shape}")
    if not clean.is_floating_point():
        raise DataError(f"{owner}: images must be floating point in [0, 1], got {clean.dtype}")


def finish(clean: Tensor, layer: Tensor, mask: Tensor, soft_mask: Tensor,
           params: dict[str, Tensor]) -> DegradedBatch:
    """Assemble a batch with ``degraded = clamp(clean + layer, 0, 1)`` computed here, so it holds exactly."""
    degraded = (clean + layer).clamp_(0.0, 1.0)
    dev = clean.device
    return DegradedBatch(
        degraded=degraded, clean=clean, layer=layer, mask=mask.to(clean.dtype),
        soft_mask=soft_mask.to(clean.dtype),
        params={k: v.to(device=dev, dtype=torch.float32) for k, v in params.items()},
    )


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` itself on the CPU; elsewhere a device generator seeded from one draw of it (so large
    random tensors are made on the accelerator, still deterministic per seed on that device)."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def per_image_max(x: Tensor) -> Tensor:
    """(N, 1, 1, 1) maximum over all but the batch dimension."""
    return x.flatten(1).amax(1).view(-1, 1, 1, 1)


def normalise01(x: Tensor) -> Tensor:
    """Min–max normalise each image of (N, C, H, W) to [0, 1] (a constant image becomes 0).

    >>> normalise01(torch.tensor([[[[2.0, 4.0], [3.0, 2.0]]]])).flatten().tolist()
    [0.0, 1.0, 0.5, 0.0]
    """
    # amin + amax: (much) faster than torch.aminmax on the CPU; works on strided views without a copy
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    return (x - lo).div_(torch.where(span > 0, span, torch.ones_like(span)))  # (max - lo) / span == 1 exactly


def separable_filter(x: Tensor, taps: Tensor) -> Tensor:
    """Valid 2-D filtering of (N, C, H, W) by a per-image separable kernel ``taps`` (N, K) (rows then columns):
    output (N, C, H-K+1, W-K+1). A loop over the K taps (not over images or pixels): per-image weights make
    each tap one broadcast multiply-add, which beats grouped ``conv2d`` on the CPU for small K."""
    n, k = taps.shape
    w = taps.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1, k)
    h_out = x.shape[-1] - k + 1
    y = x[..., 0:h_out] * w[..., 0]
    for i in range(1, k):
        y.addcmul_(x[..., i:i + h_out], w[..., i])
    v_out = x.shape[-2] - k + 1
    z = y[..., 0:v_out, :] * w[..., 0]
    for i in range(1, k):
        z.addcmul_(y[..., i:i + v_out, :], w[..., i])
    return z


def gaussian_taps(sigma: Tensor, size: int, radius: Tensor | None = None) -> Tensor:
    """(N, size) normalised 1-D Gaussian taps centred in an odd window of ``size`` (sigma in pixels; 0 = a
    delta), truncated to ``|offset| <= radius`` per image when ``radius`` (N,) is given.

    >>> gaussian_taps(torch.tensor([0.0, 1.0]), 3, radius=torch.tensor([1, 0])).tolist()
    [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    """
    r = torch.arange(size, dtype=torch.float64) - size // 2
    s = sigma.to(torch.float64).view(-1, 1)
    g = torch.exp(-(r**2) / (2 * torch.where(s > 0, s, torch.ones_like(s)) ** 2))
    g = torch.where(s > 0, g, (r == 0).to(torch.float64).expand_as(g))
    if radius is not None:
        g = g * (r.abs() <= radius.to(torch.float64).view(-1, 1))
    return g / g.sum(1, keepdim=True)
