"""One small registry class used by every extension point (families, backgrounds, degradations, probes).

Entries are either registered eagerly with the :meth:`Registry.register` decorator (handy for user code)
or declared *lazily* as ``"module:attribute"`` strings, so that importing ``probe`` never imports every
family or probe, and one stale module cannot break the others::

    FAMILIES = Registry("model family", lazy={"resnet": "probe.models.resnet:ResNet"})

    @FAMILIES.register("mynet")
    class MyNet(RestorationModel): ...

    FAMILIES.get("resnet")      # imports probe.models.resnet on first use
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from probe.errors import ConfigError


class Registry:
    """A name → object table with lazy entries and one-line errors for unknown names."""

    def __init__(self, kind: str, lazy: dict[str, str] | None = None):
        self.kind = kind
        self._lazy: dict[str, str] = dict(lazy or {})
        self._loaded: dict[str, Any] = {}

    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable[[Any], Any]:
        """Decorator registering a class or function under ``name`` (default: its lowercased name)."""

        def decorator(obj: Any) -> Any:
            key = (name or obj.__name__).lower()
            if not overwrite and key in self._loaded and self._loaded[key] is not obj:
                raise ConfigError(f"{self.kind} {key!r} is already registered")
            self._loaded[key] = obj
            if not getattr(obj, "name", None) or getattr(obj, "name", None) != key:
                try:
                    obj.name = key
                except (AttributeError, TypeError):
                    pass
            return obj

        return decorator

    def add_lazy(self, name: str, target: str) -> None:
        """Declare ``name`` as ``"module:attribute"``, imported on first :meth:`get`."""
        self._lazy[name.lower()] = target

    def get(self, name: str) -> Any:
        key = str(name).lower()
        if key in self._loaded:
            return self._loaded[key]
        if key in self._lazy:
            module_name, _, attr = self._lazy[key].partition(":")
            try:
                module = importlib.import_module(module_name)
                obj = getattr(module, attr)
            except Exception as exc:  # a broken entry must name itself, not break the registry
                raise ConfigError(
                    f"{self.kind} {key!r} could not be loaded from {self._lazy[key]}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self._loaded.setdefault(key, obj)
            try:
                obj.name = key
            except (AttributeError, TypeError):
                pass
            return obj
        raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or 'none'}")

    def names(self) -> list[str]:
        return sorted(set(self._lazy) | set(self._loaded))

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._lazy or str(name).lower() in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def check_once(check: Callable[..., None]) -> Callable[..., None]:
    """Decorator for a validation ``check(*args)`` that builds something to validate it (a background source, a
    degradation): it runs once per distinct JSON-able ``args`` (successes cached, so a plan of 100,000 cells
    over a few values builds a few); arguments that are not JSON-able are checked every time. ``check`` gets
    the arguments as JSON gives them back (tuples as lists); it raises :mod:`probe.errors` types."""

    @functools.lru_cache(maxsize=1024)
    def cached(key: str) -> None:
        check(*json.loads(key))

    @functools.wraps(check)
    def run(*args: Any) -> None:
        try:
            key = json.dumps(args, sort_keys=True)
        except (TypeError, ValueError):
            check(*args)
            return
        cached(key)

    return run
