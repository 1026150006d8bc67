"""Any user ``nn.Module`` as a probe model: the ``external`` family and its output/size/dtype conventions.

``build("external", arch="my_arch.py:MyNet", arch_kwargs={...}, pad_multiple=8)`` (or
``probe.load_model(weights, arch=...)``) returns an instance of *the user's own class*, subclassed on the fly
so that its module names, ``state_dict`` keys and hooks stay exactly those of the user's code, with:

* ``forward(x)`` taking and returning NCHW float RGB in [0, 1] (the probe contract), whatever the network's
  conventions are:

  - ``output``: the dotted path of the restored image in nested tuples/lists/dicts (``-1``, ``"1.-1"``,
    ``"derained"``). Default: chosen by :func:`probe.models.output_select.check_network` on a synthetic probe
    batch when the network is loaded (the rule is in that module; the choice and why are in
    ``net.output_choice`` and the load report). A network built fresh (to be trained) takes the first
    image-shaped tensor, depth first;
  - ``output_is``: ``"image"`` or ``"layer"`` for networks that predict the degradation layer D (the restored
    image is then input − D); default: detected by the same check;
  - ``arch_args``: the constructor style, ``"kwargs"`` (default), ``"namespace"`` or ``"dict"`` (see
    :mod:`probe.models.arch`);
  - ``code_root``: a repository folder put first on ``sys.path`` while the arch file is imported (its
    package-style imports, ``from model import common``);
  - ``input_range``: 1 (default, images in [0, 1]) or 255 (the network expects 0–255; output scaled back);
  - ``pad_multiple`` (default 1): H and W are padded at the bottom/right to a multiple (``pad_mode``
    ``"reflect"``, the default, or ``"zero"``) and the output cropped back;
  - ``tile`` / ``tile_overlap``: images larger than ``tile`` are run tile by tile with that overlap and
    averaged where tiles overlap (not while probes capture features: a hooked forward runs whole images);
  - the input is cast to the network's parameter dtype (half-precision weights kept with ``dtype``) and
    the output returned as float32.

  The network always gets a copy of the caller's images (one that changes its input in place changes nothing
  of probe's); a non-deterministic network found by the check is seeded on every forward. A forward that
  fails raises one :class:`~probe.errors.DataError` naming the size and suggesting ``pad_multiple`` /
  ``tile``; one that runs out of memory raises :class:`~probe.models.output_select.OutOfMemory` saying so.
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

from probe.errors import ConfigError, DataError, ProbeError, one_line

OUTPUT_IS = ("image", "layer")
PAD_MODES = ("reflect", "zero")


@dataclass
class Conventions:
    """How to call a foreign network (see the module docstring)."""

    output: int | str | None = None
    output_is: str | None = None
    arch_args: str = "kwargs"
    input_range: float = 1.0
    pad_multiple: int = 1
    pad_mode: str = "reflect"
    tile: int | None = None
    tile_overlap: int = 16
    layers: list[str] | None = None
    max_layers: int = 8
    code_root: str | None = None

    def __post_init__(self) -> None:
        if self.output is not None and (isinstance(self.output, bool) or not isinstance(self.output, (int, str))):
            raise ConfigError(f"output: must be an index or a key, got {self.output!r}")
        if self.output is not None:
            from probe.models.output_paths import parse_selector

            parse_selector(self.output)
        if self.code_root is not None and not isinstance(self.code_root, str):
            raise ConfigError(f"code_root: must be a folder path, got {self.code_root!r}")
        if self.arch_args not in ("kwargs", "namespace", "dict"):
            raise ConfigError(f"arch_args: must be kwargs, namespace or dict, got {self.arch_args!r}")
        if self.output_is is not None and self.output_is not in OUTPUT_IS:
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


def select_output(raw: Any, selector: int | str | None, n: int, h: int, w: int) -> Tensor:
    """The restored image among a forward's outputs: the tensor at the dotted path ``selector`` (``-1``,
    ``"1.-1"``, ``"derained"``), else — for a network no check has run on (a fresh one being trained) — the first
    image-shaped tensor, depth first. Loaded networks use the choice of
    :func:`probe.models.output_select.check_network` instead."""
    from probe.models.output_paths import describe, image_candidates, parse_selector, pick

    path = parse_selector(selector)
    if path is not None:
        return pick(raw, path)
    if isinstance(raw, Tensor):
        return raw
    found = image_candidates(raw, n, h, w)
    if found:
        return found[0][1]
    raise DataError(f"the forward returned {describe(raw)}: no image-shaped element ({n}, 3, ≥{h}, ≥{w}); "
                    "pass output= (--output) with the path of the restored image (e.g. 0, -1, 1.-1, a key)")


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

    @property
    def output_choice(self) -> Any:
        """The :class:`~probe.models.output_select.OutputChoice` of the load check (None before it ran)."""
        return self.__dict__.get("_probe_choice")

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

            choice = self.output_choice  # traced at a size the network accepts
            size = choice.size if choice is not None else 64 * max(1, math.ceil(conv.pad_multiple / 64))
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

    def _probe_prepare(self, x: Tensor) -> Tensor:
        """The network's input: scaled to its range, padded, cast to its dtype; always a new tensor, so a
        network that changes its input in place never changes the caller's images."""
        conv = self._probe_conv
        h, w = x.shape[-2], x.shape[-1]
        z = x * conv.input_range if conv.input_range != 1 else x
        ph, pw = (-h) % conv.pad_multiple, (-w) % conv.pad_multiple
        if ph or pw:
            if conv.pad_mode == "reflect" and ph < h and pw < w:
                z = F.pad(z, (0, pw, 0, ph), mode="reflect")
            else:
                z = F.pad(z, (0, pw, 0, ph), mode="constant" if conv.pad_mode == "zero" else "replicate")
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), x.dtype)  # type: ignore[attr-defined]
        z = z.to(dtype)
        return z.clone() if z.data_ptr() == x.data_ptr() else z

    def _probe_call(self, z: Tensor, seed: int | None = None, wrap: bool = True) -> Any:
        """The user's own forward on ``z`` (seeded when ``seed`` is given); with ``wrap`` its errors are one
        line: out of memory named as memory, other runtime errors as a size problem with a padding hint."""
        from probe.models.output_select import OutOfMemory, is_out_of_memory

        try:
            if seed is None:
                return super().forward(z)  # type: ignore[misc]
            with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
                torch.manual_seed(seed)
                return super().forward(z)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - user code: one line, the traceback with --debug
            if not wrap or isinstance(exc, ProbeError):
                raise
            shape = "×".join(str(s) for s in z.shape)
            if is_out_of_memory(exc):
                raise OutOfMemory(f"{type(self).__name__}: out of memory in the forward on a batch of "
                                  f"{shape} on {z.device} ({one_line(str(exc))[:160]}); pass --tile N for large "
                                  "images, a smaller --eval-patch, or another --device") from exc
            conv = self._probe_conv
            hint = f"pad_multiple is {conv.pad_multiple}" if conv.pad_multiple > 1 else \
                "if it needs sizes divisible by 8 (or 16, 32), pass --pad-multiple N / pad_multiple"
            choice = self.output_choice
            runs = f"; it runs at {choice.size}×{choice.size} (--eval-patch {choice.size})" if choice else ""
            raise DataError(f"{type(self).__name__}: forward failed on input {shape}: "
                            f"{type(exc).__name__}: {one_line(str(exc))[:200]}; {hint}{runs}; "
                            "for large images pass --tile N") from exc

    def _probe_once(self, x: Tensor) -> Tensor:
        conv = self._probe_conv
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        choice = self.output_choice
        raw = self._probe_call(self._probe_prepare(x), 0 if choice is not None and choice.seeded else None)
        selector = conv.output if conv.output is not None else (choice.path if choice is not None else None)
        out = select_output(raw, selector, n, h, w)[..., :h, :w].to(x.dtype)
        if out.shape != x.shape:
            raise DataError(f"{type(self).__name__}: output of shape {tuple(out.shape)} for an input of "
                            f"{tuple(x.shape)}; probe needs an image-to-image network at scale 1 (see output=)")
        if conv.input_range != 1:
            out = out / conv.input_range
        output_is = conv.output_is or (choice.output_is if choice is not None else "image")
        return x - out if output_is == "layer" else out

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
                    "layers", "max_layers", "arch_args", "code_root")


def External(size: str = "default", arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
             **options: Any) -> nn.Module:
    """The ``external`` family: build ``arch`` (``FILE.py:Class`` / ``pkg.mod:Class``) with ``arch_kwargs``.

    ``options`` are the :class:`Conventions` (output, output_is, input_range, pad_multiple, pad_mode, tile,
    tile_overlap, layers, max_layers, arch_args, code_root). Unknown options raise :class:`ConfigError` naming them.
    """
    from probe.models.arch import build_arch, code_root_path, parse_kwargs

    if size not in ("default", "tiny"):  # "tiny" is build()'s default size: the same single preset here
        raise ConfigError(f"unknown size {size!r} for family 'external'; allowed: default")
    if not arch:
        raise ConfigError("family 'external' needs arch = \"FILE.py:Class\" or \"package.module:Class\"")
    unknown = sorted(set(options) - set(_CONVENTION_KEYS))
    if unknown:
        raise ConfigError(f"external: unknown option(s) {', '.join(map(repr, unknown))}; allowed: arch, "
                          f"arch_kwargs, {', '.join(_CONVENTION_KEYS)}")
    kwargs = parse_kwargs(arch_kwargs, "arch_kwargs")
    if options.get("code_root") is not None:  # recorded absolute: the spec reloads from anywhere
        options["code_root"] = str(code_root_path(options["code_root"]))
    conventions = Conventions(**options)
    net = build_arch(arch, kwargs, style=conventions.arch_args, code_root=conventions.code_root)
    spec = {"arch": arch, "arch_kwargs": kwargs, **{k: v for k, v in options.items() if v is not None}}
    return adapt(net, conventions, spec)


External.sizes = {"default": {}}  # type: ignore[attr-defined]


def external_model_kwargs(model: dict[str, Any], kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``external`` family's keyword arguments from a config's ``[model]`` table: ``arch`` and ``code_root``
    (relative paths are resolved against the config file's folder, else the working directory), ``kwargs`` → the
    constructor's ``arch_kwargs``, other keys are conventions."""
    from pathlib import Path

    from probe.models.arch import split_arch

    if "arch" not in model and "arch" in kwargs:  # the serialised form (TrainConfig.to_dict()): already resolved
        model, kwargs = {**kwargs, **model}, {}
    out = {k: v for k, v in model.items()}
    arch = out.get("arch")
    where, name = split_arch(arch)
    origin = Path(str(source).split(" [cell ")[0])  # a grid cell names its spec file first
    base = origin.parent if origin.is_file() else Path.cwd()
    if where.endswith(".py") and not Path(where).expanduser().is_absolute():
        out["arch"] = f"{(base / where).resolve()}:{name}"
    if isinstance(out.get("code_root"), str) and not Path(out["code_root"]).expanduser().is_absolute():
        out["code_root"] = str((base / out["code_root"]).resolve())  # like arch: against the spec's folder
    if kwargs:
        out["arch_kwargs"] = {**dict(out.get("arch_kwargs") or {}), **kwargs}
    return out


def check_trainable_output(net: nn.Module, patch: int) -> None:
    """Before a user architecture is trained (a grid cell of family ``external``): when no ``output`` is given
    and its forward returns several image-shaped tensors (stages, a layer and an image, …), an untrained network
    cannot show which one is the restored image, and the loss would train whichever comes first — so refuse in
    one :class:`~probe.errors.ConfigError` line listing them. One forward on a 1 × 3 × ``patch`` × ``patch``
    batch in eval mode, without gradients (batch-norm statistics and the global RNG are untouched)."""
    from probe.models.output_paths import describe, image_candidates, path_text

    conv = net.__dict__.get("_probe_conv")
    if conv is None or conv.output is not None:
        return
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    x = torch.rand(1, 3, patch, patch, generator=torch.Generator().manual_seed(0)).to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            raw = net._probe_call(net._probe_prepare(x))
    finally:
        net.train(was_training)
    found = image_candidates(raw, 1, patch, patch)
    if len(found) > 1:
        paths = ", ".join(path_text(p) for p, _ in found)
        example = path_text(found[-1][0])
        raise ConfigError(f"{type(net).__name__}: its forward returns {describe(raw)}, {len(found)} image-shaped "
                          f"outputs ({paths}); an untrained network cannot show which is the restored image: set "
                          f"output = \"PATH\" in the spec's [model] table (e.g. output = \"{example}\")")
