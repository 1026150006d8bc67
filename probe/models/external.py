"""Any user ``nn.Module`` as a probe model: the ``external`` family and its output/size/dtype conventions.

``build("external", arch="my_arch.py:MyNet", arch_kwargs={...}, pad_multiple=8)`` (or
``probe.load_model(weights, arch=...)``) returns an instance of *the user's own class*, subclassed on the fly
so that its module names, ``state_dict`` keys and hooks stay exactly those of the user's code, with:

* ``forward(x)`` taking and returning NCHW float RGB in [0, 1] (the probe contract), whatever the network's
  conventions are:

  - ``output``: which element of a tuple/list (int index) or dict (key) the restored image is. Default: the
    first *image-shaped* element (a 4-D tensor with the input's batch size and 3 channels at the input size),
    searched in order (so a multi-stage ``[final, stage2, stage1]`` gives ``final``; pass ``output=-1`` when
    the final stage comes last);
  - ``output_is``: ``"image"`` (default) or ``"layer"`` for networks that predict the degradation layer D;
    the restored image is then input − D;
  - ``input_range``: 1 (default, images in [0, 1]) or 255 (the network expects 0–255; output scaled back);
  - ``pad_multiple`` (default 1): H and W are padded at the bottom/right to a multiple (``pad_mode``
    ``"reflect"``, the default, or ``"zero"``) and the output cropped back;
  - ``tile`` / ``tile_overlap``: images larger than ``tile`` are run tile by tile with that overlap and
    averaged where tiles overlap (not while probes capture features: a hooked forward runs whole images);
  - the input is cast to the network's parameter dtype (half-precision weights kept with ``dtype``) and
    the output returned as float32.

  A forward that fails on a size raises one :class:`~probe.errors.DataError` naming the size and suggesting
  ``pad_multiple`` / ``tile``.
* ``probe_points()``: the ``layers`` given, else :func:`probe.models.trace.default_layers`.
* ``spec``: ``{"family": "external", "size": "default", "kwargs": {...}}`` (so runs trained with it save and
  reload like every family). Outputs are degradation estimates as input − output, like every family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.errors import ConfigError, DataError, one_line

OUTPUT_IS = ("image", "layer")
PAD_MODES = ("reflect", "zero")


@dataclass
class Conventions:
    """How to call a foreign network (see the module docstring)."""

    output: int | str | None = None
    output_is: str = "image"
    input_range: float = 1.0
    pad_multiple: int = 1
    pad_mode: str = "reflect"
    tile: int | None = None
    tile_overlap: int = 16
    layers: list[str] | None = None
    max_layers: int = 8

    def __post_init__(self) -> None:
        if self.output is not None and (isinstance(self.output, bool) or not isinstance(self.output, (int, str))):
            raise ConfigError(f"output: must be an index or a key, got {self.output!r}")
        if self.output_is not in OUTPUT_IS:
            raise ConfigError(f"output_is: must be one of {', '.join(OUTPUT_IS)}, got {self.output_is!r}")
        if isinstance(self.input_range, bool) or self.input_range not in (1, 255, 1.0, 255.0):
            raise ConfigError(f"input_range: must be 1 or 255, got {self.input_range!r}")
        for key in ("pad_multiple", "max_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}: must be an integer >= 1, got {value!r}")
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode: must be one of {', '.join(PAD_MODES)}, got {self.pad_mode!r}")
        if self.tile is not None and (isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 8):
            raise ConfigError(f"tile: must be null or an integer >= 8, got {self.tile!r}")
        ov = self.tile_overlap
        if isinstance(ov, bool) or not isinstance(ov, int) or ov < 0 or (self.tile and ov >= self.tile):
            raise ConfigError(f"tile_overlap: must be an integer >= 0 and < tile, got {ov!r}")
        if self.layers is not None and (isinstance(self.layers, str) or not all(isinstance(n, str)
                                                                                for n in self.layers)):
            raise ConfigError(f"layers: must be a list of module names, got {self.layers!r}")


def _image_like(value: Any, n: int, h: int, w: int) -> bool:
    return isinstance(value, Tensor) and value.dim() == 4 and value.shape[0] == n and value.shape[1] == 3 \
        and value.shape[-2] >= h and value.shape[-1] >= w


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, dict):
        return "dict{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "[" + ", ".join(_describe(v) for v in value) + "]"
    return type(value).__name__


def select_output(raw: Any, selector: int | str | None, n: int, h: int, w: int) -> Tensor:
    """The restored image among a forward's outputs (see ``output`` in the module docstring)."""
    if isinstance(raw, Tensor) and selector is None:
        return raw
    if selector is not None:
        try:
            if isinstance(raw, dict):
                value = raw[selector]
            elif isinstance(raw, (tuple, list)) and isinstance(selector, int):
                value = raw[selector]
            else:
                raise KeyError(selector)
        except (KeyError, IndexError, TypeError):
            raise ConfigError(f"output={selector!r} does not select from the forward's output "
                              f"{_describe(raw)}") from None
        if not isinstance(value, Tensor):
            raise ConfigError(f"output={selector!r} selects a {_describe(value)}, not an image tensor")
        return value
    items = list(raw.values()) if isinstance(raw, dict) else list(raw) if isinstance(raw, (tuple, list)) else []
    for item in items:
        if _image_like(item, n, h, w):
            return item
    raise DataError(f"the forward returned {_describe(raw)}: no image-shaped element ({n}, 3, ≥{h}, ≥{w}); "
                    "pass output= (--output) with the index or key of the restored image")


def _hooked(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules() if m is not model)


class _ProbeAdapter:
    """Mixin placed before the user's class: the probe calling convention around its ``forward``."""

    family = "external"
    _probe_conv: Conventions
    _probe_kwargs: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return {"family": "external", "size": "default", "kwargs": dict(self._probe_kwargs)}

    def probe_points(self) -> list[str]:
        conv = self._probe_conv
        if conv.layers is not None:
            return list(conv.layers)
        own = getattr(super(), "probe_points", None)  # the class declares its own probe points (HookPoints)
        if callable(own):
            return list(own())
        cached = self.__dict__.get("_probe_points_cache")
        if cached is None:
            from probe.models.trace import default_layers

            size = 64 * max(1, math.ceil(conv.pad_multiple / 64))
            cached = default_layers(self, (1, 3, size, size), conv.max_layers)
            self.__dict__["_probe_points_cache"] = cached
        return list(cached)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if args or kwargs:  # not the probe convention: pass through untouched
            return super().forward(x, *args, **kwargs)  # type: ignore[misc]
        conv = self._probe_conv
        h, w = x.shape[-2:]
        if conv.tile and (h > conv.tile or w > conv.tile) and not _hooked(self):  # type: ignore[arg-type]
            return self._probe_tiled(x)
        return self._probe_once(x)

    def _probe_once(self, x: Tensor) -> Tensor:
        conv = self._probe_conv
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        z = x * conv.input_range if conv.input_range != 1 else x
        ph, pw = (-h) % conv.pad_multiple, (-w) % conv.pad_multiple
        if ph or pw:
            if conv.pad_mode == "reflect" and ph < h and pw < w:
                z = F.pad(z, (0, pw, 0, ph), mode="reflect")
            else:
                z = F.pad(z, (0, pw, 0, ph), mode="constant" if conv.pad_mode == "zero" else "replicate")
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)  # type: ignore[attr-defined]
        try:
            raw = super().forward(z.to(dtype))  # type: ignore[misc]
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise
            hint = f"pad_multiple is {conv.pad_multiple}" if conv.pad_multiple > 1 else \
                "if it needs sizes divisible by 8 (or 16, 32), pass --pad-multiple N / pad_multiple"
            raise DataError(f"{type(self).__name__}: forward failed on input size {h}×{w} "
                            f"(padded {z.shape[-2]}×{z.shape[-1]}): {one_line(str(exc))[:200]}; {hint}; "
                            "for large images pass --tile N") from exc
        out = select_output(raw, conv.output, n, h, w)[..., :h, :w].to(x.dtype)
        if out.shape != x.shape:
            raise DataError(f"{type(self).__name__}: output of shape {tuple(out.shape)} for an input of "
                            f"{tuple(x.shape)}; probe needs an image-to-image network at scale 1 (see output=)")
        if conv.input_range != 1:
            out = out / conv.input_range
        return x - out if conv.output_is == "layer" else out

    def _probe_tiled(self, x: Tensor) -> Tensor:
        conv = self._probe_conv
        tile, stride = int(conv.tile or 0), int(conv.tile or 0) - conv.tile_overlap
        h, w = x.shape[-2:]

        def starts(size: int) -> list[int]:
            if size <= tile:
                return [0]
            found = list(range(0, size - tile + 1, stride))
            return found + ([size - tile] if found[-1] != size - tile else [])

        out = torch.zeros_like(x)
        weight = torch.zeros_like(x[:, :1])
        for top in starts(h):
            for left in starts(w):
                part = x[..., top:top + tile, left:left + tile]
                out[..., top:top + tile, left:left + tile] += self._probe_once(part)
                weight[..., top:top + tile, left:left + tile] += 1
        return out / weight


_ADAPTED: dict[type, type] = {}


def adapt(net: nn.Module, conventions: Conventions, spec_kwargs: dict[str, Any]) -> nn.Module:
    """Give ``net`` (an instance of the user's class) the probe convention, in place; returns it."""
    cls = type(net)
    if isinstance(net, _ProbeAdapter):
        cls = next(c for c in cls.__mro__[1:] if c is not _ProbeAdapter and not issubclass(c, _ProbeAdapter))
    if cls not in _ADAPTED:
        _ADAPTED[cls] = type(cls.__name__, (_ProbeAdapter, cls), {"__module__": cls.__module__,
                                                                   "__qualname__": cls.__qualname__})
    net.__class__ = _ADAPTED[cls]
    net.__dict__["_probe_conv"] = conventions
    net.__dict__["_probe_kwargs"] = dict(spec_kwargs)
    net.__dict__.pop("_probe_points_cache", None)
    return net


_CONVENTION_KEYS = ("output", "output_is", "input_range", "pad_multiple", "pad_mode", "tile", "tile_overlap",
                    "layers", "max_layers")


def External(size: str = "default", arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
             **options: Any) -> nn.Module:
    """The ``external`` family: build ``arch`` (``FILE.py:Class`` / ``pkg.mod:Class``) with ``arch_kwargs``.

    ``options`` are the :class:`Conventions` (output, output_is, input_range, pad_multiple, pad_mode, tile,
    tile_overlap, layers, max_layers). Unknown options raise :class:`ConfigError` naming them.
    """
    from probe.models.arch import build_arch, parse_kwargs

    if size not in ("default", "tiny"):  # "tiny" is build()'s default size: the same single preset here
        raise ConfigError(f"unknown size {size!r} for family 'external'; allowed: default")
    if not arch:
        raise ConfigError("family 'external' needs arch = \"FILE.py:Class\" or \"package.module:Class\"")
    unknown = sorted(set(options) - set(_CONVENTION_KEYS))
    if unknown:
        raise ConfigError(f"external: unknown option(s) {', '.join(map(repr, unknown))}; allowed: arch, "
                          f"arch_kwargs, {', '.join(_CONVENTION_KEYS)}")
    kwargs = parse_kwargs(arch_kwargs, "arch_kwargs")
    conventions = Conventions(**options)
    net = build_arch(arch, kwargs)
    spec = {"arch": arch, "arch_kwargs": kwargs, **{k: v for k, v in options.items() if v is not None}}
    return adapt(net, conventions, spec)


External.sizes = {"default": {}}  # type: ignore[attr-defined]


def external_model_kwargs(model: dict[str, Any], kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``external`` family's keyword arguments from a config's ``[model]`` table: ``arch`` (a relative
    ``FILE.py`` is resolved against the config file's folder, else the working directory), ``kwargs`` → the
    constructor's ``arch_kwargs``, other keys are conventions."""
    from pathlib import Path

    from probe.models.arch import split_arch

    if "arch" not in model and "arch" in kwargs:  # the serialised form (TrainConfig.to_dict()): already resolved
        model, kwargs = {**kwargs, **model}, {}
    out = {k: v for k, v in model.items()}
    arch = out.get("arch")
    where, name = split_arch(arch)
    if where.endswith(".py") and not Path(where).expanduser().is_absolute():
        origin = Path(str(source).split(" [cell ")[0])  # a grid cell names its spec file first
        base = origin.parent if origin.is_file() else Path.cwd()
        out["arch"] = f"{(base / where).resolve()}:{name}"
    if kwargs:
        out["arch_kwargs"] = {**dict(out.get("arch_kwargs") or {}), **kwargs}
    return out
