"""Degradations that return the degraded image and its ground-truth parts (a registry)."""

from __future__ import annotations

from probe.registry import Registry

DEGRADATIONS = Registry(
    "degradation",
    lazy={
        "rain": "probe.data.degradations.rain:Rain",
        "noise": "probe.data.degradations.noise:Noise",
        "blur": "probe.data.degradations.blur:Blur",
    },
)
