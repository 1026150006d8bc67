"""Degradations that return the degraded image and its ground-truth parts (a registry).

>>> import torch
>>> noise = make_degradation({"type": "noise", "kind": "gaussian", "sigma": [15, 25]})
>>> noise.apply(torch.rand(2, 3, 16, 16), torch.Generator().manual_seed(0)).layer.shape
torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probe.errors import ConfigError
from probe.registry import Registry, check_once

DEGRADATIONS = Registry(
    "degradation",
    lazy={
        "rain": "probe.data.degradations.rain:Rain",
        "rain_particles": "probe.data.degradations.rain_particles:RainParticles",
        "noise": "probe.data.degradations.noise:Noise",
        "blur": "probe.data.degradations.blur:Blur",
        "noise_correlated": "probe.data.degradations.noise_correlated:NoiseCorrelated",
        "defocus": "probe.data.degradations.defocus:Defocus",
    },
)


def make_degradation(spec: Any):
    """Build a degradation from a spec table ``{"type": name, **keys}`` (a built degradation passes through).

    Unknown types, unknown keys and bad values raise :class:`~probe.errors.ConfigError` naming them.
    """
    from probe.data.degradations.base import Degradation

    if isinstance(spec, Degradation):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"degradation spec must be a table with a 'type', got {spec!r}")
    spec = dict(spec)
    name = spec.pop("type", None)
    if name is None:
        raise ConfigError(f"degradation spec needs a 'type' (one of {', '.join(DEGRADATIONS.names())}), "
                          f"got keys {sorted(spec)}")
    return DEGRADATIONS.get(name)(**spec)


@check_once
def check_degradation(spec: Any) -> None:
    """Validate a degradation spec table as :func:`make_degradation` does, once per distinct spec
    (:func:`probe.registry.check_once`: a plan of 100,000 cells over a few degradations builds a few).
    Raises :class:`~probe.errors.ConfigError` naming the key and the allowed keys or values."""
    make_degradation(spec)


def __getattr__(attr: str):  # lazy re-export of the base class
    if attr == "Degradation":
        from probe.data.degradations.base import Degradation

        return Degradation
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["DEGRADATIONS", "Degradation", "check_degradation", "make_degradation"]
