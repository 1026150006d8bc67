"""``mixture``: background sources mixed in declared proportions (paper B's remedy 1, balanced complexity).

Paper B (Hu et al. 2025) shows that a deraining network trained on complex backgrounds alone takes the
shortcut of learning the (simpler) rain; mixing a share of *simple* backgrounds into the training set lowers
the background complexity the network must fit, so it has to learn the content and removes unseen rain
too. This source makes that mixture a single config value::

    [data]
    background = "mixture"
    background_options = { sources = ["natural", "smooth"], weights = [0.75, 0.25] }

>>> from probe.data.backgrounds.mixture import Mixture
>>> src = Mixture(patch=16, seed=0, sources=["natural", "smooth"], weights=[0.75, 0.25])
>>> src.images(8).shape, src.sources_of(8).tolist()
(torch.Size([8, 3, 32, 32]), [0, 0, 1, 0, 0, 0, 1, 0])

Which source image ``i`` comes from is fixed by smooth weighted round-robin (the nginx scheduler): every
prefix of ``n`` images holds ``round(n * weight)`` images of each source, give or take one, so the
proportions hold for any ``n_backgrounds`` and ``images(n)`` is a prefix of ``images(n + k)``. The seed picks
*which* images each source gives (every source is built with the mixture's seed and side); ``options``
passes per-source options, e.g. ``options = { folder = { root = "/data/div2k" } }``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.data.backgrounds.base import BackgroundSource, Option
from probe.errors import ConfigError


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) < 1 \
            or not all(isinstance(v, str) and v for v in value):
        raise ValueError("not a list of names")
    if len(set(value)) != len(value):
        raise ValueError("a source repeats")
    return tuple(value)


def _weights(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError("not a list")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v >= 0:
            raise ValueError("not a non-negative number")
        out.append(float(v))
    if sum(out) <= 0:
        raise ValueError("all zero")
    return tuple(out)


def _per_source(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ValueError("not a table of tables")
    return {str(k): dict(v) for k, v in value.items()}


def assignment(weights: tuple[float, ...], n: int) -> np.ndarray:
    """Source index of each of the first ``n`` images (smooth weighted round-robin; deterministic).

    Every prefix holds each source's share to within one image: ``|count_j(m) - m * w_j| < 1`` for all m.

    >>> assignment((0.5, 0.5), 4).tolist()
    [0, 1, 0, 1]
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    current = np.zeros_like(w)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        current += w
        j = int(np.argmax(current))  # ties → the first source
        out[i] = j
        current[j] -= 1.0
    return out


class Mixture(BackgroundSource):
    """Images of several registered sources in declared proportions (see the module docstring).

    Options: ``sources`` (list of registered source names, at least one, no repeats), ``weights`` (one
    non-negative number per source, normalised; default equal shares), ``options`` (a table: source name →
    that source's options). Raises :class:`~probe.errors.ConfigError` naming the option for a bad value,
    an unknown or nested source, or a weight count that does not match.
    """

    name = "mixture"
    options = {
        "sources": Option(("natural", "smooth"), _names, "a list of registered source names (no repeats)"),
        "weights": Option(None, _weights, "None or one number >= 0 per source (not all zero)"),
        "options": Option({}, _per_source, "a table: source name -> table of that source's options"),
    }

    def _validate(self) -> None:
        from probe.data.backgrounds import BACKGROUNDS, make_background

        sources = self.params["sources"]
        weights = self.params["weights"] or tuple(1.0 for _ in sources)
        if len(weights) != len(sources):
            raise ConfigError(f"background 'mixture': option 'weights' has {len(weights)} values for "
                              f"{len(sources)} sources")
        self.params["weights"] = tuple(w / sum(weights) for w in weights)
        extra = sorted(set(self.params["options"]) - set(sources))
        if extra:
            raise ConfigError(f"background 'mixture': option 'options' names {extra[0]!r}, which is not in "
                              f"'sources' {list(sources)}")
        self._sources: list[BackgroundSource] = []
        for name in sources:
            if name == self.name:
                raise ConfigError("background 'mixture': a mixture cannot contain 'mixture'")
            if name not in BACKGROUNDS:
                raise ConfigError(f"background 'mixture': source {name!r} is not registered; allowed: "
                                  f"{', '.join(n for n in BACKGROUNDS.names() if n != self.name)}")
            opts = {**self.params["options"].get(name, {}), "size": self.size}
            try:
                self._sources.append(make_background(name, self.patch, seed=self.seed, **opts))
            except ConfigError as exc:
                raise ConfigError(f"background 'mixture': source {name!r}: {exc}") from exc

    def sources_of(self, n: int) -> np.ndarray:
        """Index (into ``sources``) of the source of each of the first ``n`` images."""
        return assignment(self.params["weights"], int(n))

    def max_images(self, split: str = "train") -> int | None:
        self._check_split(split)
        limits = [s.max_images(split) for s in self._sources]
        if all(limit is None for limit in limits):
            return None
        w = self.params["weights"]
        bounded = [j for j, limit in enumerate(limits) if limit is not None and w[j] > 0]
        if not bounded:
            return None
        horizon = int(max((limits[j] + 1) / w[j] for j in bounded)) + 2
        which = assignment(w, horizon)
        for j in bounded:  # the first n at which source j would need one image more than it has
            rows = np.flatnonzero(which == j)
            horizon = min(horizon, int(rows[limits[j]]) if rows.size > limits[j] else horizon)
        return horizon

    def _generate(self, n: int, split: str) -> Tensor:
        which = self.sources_of(n)
        out = torch.empty(n, 3, self.size, self.size)
        for j, source in enumerate(self._sources):
            rows = np.flatnonzero(which == j)
            if rows.size:
                out[torch.from_numpy(rows)] = source.images(int(rows.size), split=split)
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["options"]["sources"] = [s.describe() for s in self._sources]
        return out
