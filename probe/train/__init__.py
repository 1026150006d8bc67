"""Training: typed configs, the resumable trainer, run directories and the catalog.

::

    from probe.train import TrainConfig, train, catalog
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "TrainConfig": "probe.train.config:TrainConfig",
    "train": "probe.train.trainer:train",
    "catalog": "probe.train.catalog:catalog",
    "RunDir": "probe.train.rundir:RunDir",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'probe.train' has no attribute {name!r}")
