"""Nested outputs of a forward: every tensor with its dotted path, the image-shaped candidates, and selectors.

A forward may return a tensor or nested tuples/lists/dicts of them; a **path** is a tuple of indices and keys
(``(1, -1)``, written ``1.-1``; ``("derained",)``). :func:`parse_selector` reads ``--output``, :func:`pick`
follows a path (one-line :class:`~probe.errors.ConfigError` naming the structure otherwise), and
:func:`image_candidates` lists the tensors shaped like the restored image, (N, 3, ≥ H, ≥ W), each once.
:mod:`probe.models.output_select` decides among them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from probe.errors import ConfigError


def parse_selector(value: int | str | None) -> tuple[int | str, ...] | None:
    """``-1`` → ``(-1,)``; ``"1.-1"`` → ``(1, -1)``; ``"derained"`` → ``("derained",)``; None → None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"output: must be an index, a key or a dotted path such as 1.-1, got {value!r}")
    if isinstance(value, int):
        return (value,)
    parts = value.split(".") if value else [value]
    if any(p == "" for p in parts):
        raise ConfigError(f"output: {value!r} is not a dotted path (e.g. 0, -1, 1.-1, derained)")
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)


def path_text(path: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in path) if path else "(the tensor)"


def describe(value: Any) -> str:
    """A short structural description: ``list[tensor[2, 3, 64, 64], dict{'a': tensor[...]}]``."""
    if isinstance(value, Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, dict):
        return "dict{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        items = [describe(v) for v in value]
        if len(items) > 3 and len(set(items)) == 1:
            return f"{type(value).__name__}[{len(items)} × {items[0]}]"
        return type(value).__name__ + "[" + ", ".join(items) + "]"
    return type(value).__name__


def pick(raw: Any, path: tuple[int | str, ...]) -> Tensor:
    """The tensor at ``path`` in ``raw``; ConfigError (one line, with the output's structure) otherwise."""
    value = raw
    for i, part in enumerate(path):
        try:
            if isinstance(value, dict):
                value = value[part] if part in value else value[str(part)]
            elif isinstance(value, (tuple, list)) and isinstance(part, int):
                value = value[part]
            else:
                raise KeyError(part)
        except (KeyError, IndexError, TypeError):
            raise ConfigError(f"output={path_text(path)!r} does not select from the forward's output "
                              f"{describe(raw)} (no {path_text(path[:i + 1])!r})") from None
    if not isinstance(value, Tensor):
        raise ConfigError(f"output={path_text(path)!r} selects a {describe(value)}, not an image tensor")
    return value


def tensors(raw: Any, path: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], Tensor]]:
    """Every tensor in ``raw`` (nested tuples/lists/dicts) with its path, depth first in order."""
    if isinstance(raw, Tensor):
        return [(path, raw)]
    if isinstance(raw, dict):
        return [t for k, v in raw.items() for t in tensors(v, path + (k,))]
    if isinstance(raw, (tuple, list)):
        return [t for i, v in enumerate(raw) for t in tensors(v, path + (i,))]
    return []


def image_like(value: Any, n: int, h: int, w: int) -> bool:
    return isinstance(value, Tensor) and value.dim() == 4 and value.shape[0] == n and value.shape[1] == 3 \
        and value.shape[-2] >= h and value.shape[-1] >= w


def image_candidates(raw: Any, n: int, h: int, w: int) -> list[tuple[tuple[int | str, ...], Tensor]]:
    """The image-shaped tensors of ``raw``, each once (the same tensor object twice counts once)."""
    seen: set[int] = set()
    out = []
    for path, t in tensors(raw):
        if image_like(t, n, h, w) and id(t) not in seen:
            seen.add(id(t))
            out.append((path, t))
    return out
