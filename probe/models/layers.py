"""Small pieces shared by the model families: option checks, the input check, pad-to-a-multiple and crop.

Every family pads the *bottom and right* edges only, so an internal feature map at stride ``s`` lines up
with the input: ``feature[..., : ceil(H / s), : ceil(W / s)]`` covers the image, the rest is padding::

    from probe.models.layers import pad_to_multiple
    y = pad_to_multiple(torch.rand(1, 3, 37, 53), 8)     # -> (1, 3, 40, 56), reflect padding
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from probe.errors import ConfigError, DataError


def check_options(family: str, hparams: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise ``ConfigError`` naming any option of ``family`` that is not in ``allowed``."""
    allowed = sorted(allowed)
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ConfigError(f"{family}: unknown option(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(allowed)}")


#: Upper bound of every integer hyper-parameter (widths, depths, heads, window sizes): larger values are typos
#: that would otherwise try to build a network of terabytes.
MAX_INT = 4096


def positive_int(family: str, key: str, value: Any) -> int:
    """``value`` as an int in [1, MAX_INT], or ``ConfigError`` naming ``family`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise ConfigError(f"{family}: {key!r} must be a positive integer <= {MAX_INT}, got {value!r}")
    return int(value)


def int_list(family: str, key: str, value: Any, minimum: int = 1, length: int | None = None) -> list[int]:
    """``value`` as a non-empty list of ints >= ``minimum`` (optionally of a given length)."""
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_INT for v in value)
    if not ok or (length is not None and len(value) != length):
        need = f"a list of {length} " if length is not None else "a non-empty list of "
        raise ConfigError(f"{family}: {key!r} must be {need}integers >= {minimum}, got {value!r}")
    return [int(v) for v in value]


def positive_float(family: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{family}: {key!r} must be a positive number, got {value!r}")
    return float(value)


def boolean(family: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{family}: {key!r} must be true or false, got {value!r}")
    return value


def check_input(family: str, x: Tensor) -> None:
    """Raise ``DataError`` unless ``x`` is an (N, 3, H, W) floating-point tensor."""
    if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise DataError(f"{family}: expected a float (N, 3, H, W) RGB tensor, got {x.dtype} "
                        f"of shape {tuple(x.shape)}")


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad H and W (bottom/right) up to a multiple of ``multiple``.

    Reflect padding where the image is large enough for it (pad < size), replicate otherwise (tiny images,
    e.g. 1×1). Returns ``x`` itself when nothing needs padding.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def crop(x: Tensor, h: int, w: int) -> Tensor:
    """The top-left ``h`` × ``w`` of ``x`` (undoes :func:`pad_to_multiple`)."""
    if x.shape[-2] == h and x.shape[-1] == w:
        return x
    return x[..., :h, :w]
