"""Training: typed configs, the resumable trainer, run directories and the catalog.

::

    from probe.train import TrainConfig, train, catalog

``probe.train`` is both this package and the README's function: once any ``probe.train.*`` module has been
imported, Python binds the attribute ``probe.train`` to this package, so the package itself is callable and
forwards to :func:`probe.train.trainer.train`.
"""

from __future__ import annotations

import sys
import types
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


class _CallablePackage(types.ModuleType):
    """Module type whose call is ``probe.train.trainer.train`` (keeps ``probe.train(...)`` working)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return import_module("probe.train.trainer").train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
