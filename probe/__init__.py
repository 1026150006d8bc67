"""probe — why does your image-restoration network fail on degradations it has not seen?

The public entry points are imported lazily so that ``import probe`` and ``probe --help`` stay fast::

    import probe
    model = probe.load_model("trained_models/derain_complexity/<cell>")
    runs = probe.catalog("trained_models/derain_complexity")
    net = probe.load_model("net_g.pth", arch="my_arch.py:MyNet", arch_kwargs={"width": 32})   # your network
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "probe.models.checkpoint:load_model",
    "build_model": "probe.models:build",
    "catalog": "probe.train.catalog:catalog",
    "train": "probe.train.trainer:train",
    "TrainConfig": "probe.train.config:TrainConfig",
    "ProbeError": "probe.errors:ProbeError",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
