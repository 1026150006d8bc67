"""Feature capture at named places of a network, streamed over batches with bounded memory.

Probes read activations at a model's :class:`~probe.models.base.HookPoint` s (``model.probe_points()``), or at
any module named as in ``model.named_modules()`` (dotted names, e.g. ``"body.3.conv"``) — which is how a user's
own ``nn.Module`` is probed. Capture is done with forward hooks that are installed for one forward pass at a
time, so several captures can be interleaved (``zip`` of two :func:`iterate_features` generators is safe)::

    from probe.models import build
    from probe.methods.capture import iterate_features
    from probe.methods.reducers import pool

    model = build("resnet", size="tiny").eval()
    images = torch.rand(10, 3, 32, 32)
    for feats in iterate_features(model, images, ["hook_head", "hook_body"], batch_size=4, reducer=pool):
        feats["hook_head"].shape          # (3, C), (4, C), (3, C): near-equal batches, pooled per image

Semantics, documented once for every probe:

* **Copies, not views.** A hook receives the module's output *before* later in-place operations (``ReLU
  (inplace=True)``, ``x += y``) run. Without a reducer the output is stored as ``detach().clone()``; with a
  reducer the reducer runs inside the hook, and a reduced result that still shares memory with the output
  (a view such as ``flatten``) is cloned. Either way later in-place ops cannot corrupt what was captured.
* **Modules called more than once** in one forward pass (a shared block applied twice) are recorded per call:
  the first call under ``name``, later calls under ``name#1``, ``name#2``, … (``on_repeat="suffix"``, the
  default), or raise :class:`~probe.errors.ConfigError` (``on_repeat="error"``).
* **Layouts.** Outputs are expected as NCHW maps, ``(N, C)`` vectors or ``(N, L, C)`` token sequences
  (transformer convention; L = h·w in raster order). A tuple/list output is captured by its first tensor.
* **Bounded memory.** :func:`iterate_features` yields one batch at a time; a *reducer* (``pool``, ``flatten``,
  ``PixelSampler`` of :mod:`probe.methods.reducers`, or any ``f(tensor, ctx) -> Tensor | dict``) shrinks each
  activation as soon as it is produced, so only one activation map of one batch is alive at a time beyond the
  model's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from probe.device import model_device
from probe.errors import ConfigError

Reducer = Callable[[Tensor, "BatchContext"], Any]

__all__ = [
    "BatchContext",
    "FeatureCapture",
    "Reducer",
    "available_layers",
    "collect_features",
    "evaluating",
    "even_batches",
    "iterate_features",
    "model_device",
    "resolve_layers",
]


@dataclass
class BatchContext:
    """What a reducer knows about the batch being captured.

    ``indices``: positions of the batch's images in the whole input (``(b,)`` long tensor, CPU);
    ``input_hw``: the input's spatial size (H, W), used to map token sequences and pixel positions;
    ``layer``: the name the value is recorded under (``name`` or ``name#k``), set for each call.
    """

    indices: Tensor
    input_hw: tuple[int, int]
    layer: str = ""


# ----------------------------------------------------------------------------------------------- layers

def available_layers(model: nn.Module) -> list[str]:
    """The model's probe points: ``model.probe_points()`` if it has that method, else its HookPoint names."""
    if hasattr(model, "probe_points") and callable(model.probe_points):
        return list(model.probe_points())
    from probe.models.base import HookPoint

    return [name for name, module in model.named_modules() if isinstance(module, HookPoint)]


def resolve_layers(model: nn.Module, layers: str | Sequence[str] | None = None) -> list[str]:
    """Validate ``layers`` against ``model`` and return them as a list (default: every probe point).

    A name may be a probe point or any dotted module name of ``model.named_modules()``. Unknown names raise
    :class:`~probe.errors.ConfigError` listing the available probe points::

        resolve_layers(build("resnet"), ["hook_head", "blocks.0.conv1"])   # both valid
    """
    points = available_layers(model)
    if layers is None:
        if not points:
            raise ConfigError(f"model {type(model).__name__} has no HookPoints; pass layers=[module names], "
                              f"e.g. {', '.join(_example_modules(model)) or '(no submodules)'}")
        return points
    if isinstance(layers, str):
        layers = [layers]
    modules = dict(model.named_modules())
    out: list[str] = []
    for name in layers:
        if not isinstance(name, str) or name not in modules or name == "":
            hint = ", ".join(points) if points else ", ".join(_example_modules(model))
            what = "probe points" if points else "modules"
            raise ConfigError(f"unknown layer {name!r} for model {type(model).__name__}; available {what}: "
                              f"{hint or 'none'} (or any name from model.named_modules())")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("layers must name at least one module")
    return out


def _example_modules(model: nn.Module, limit: int = 12) -> list[str]:
    names = [n for n, _ in model.named_modules() if n]
    return names[:limit] + (["…"] if len(names) > limit else [])


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards::

        with evaluating(model):
            feats = collect_features(model, images, reducer=pool)
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------------- capture

class FeatureCapture:
    """Forward hooks that copy (or reduce) the outputs of named modules during forward passes.

    Use as a context manager around forward passes; ``features`` maps each captured name (``name``,
    ``name#1`` for a second call, …) to the cloned or reduced output, in call order::

        with FeatureCapture(model, ["hook_head"]) as cap:
            model(x)
        cap.features["hook_head"]          # detached clone, safe from later in-place ops

    ``reducer(tensor, ctx)`` (see the module docstring) runs inside the hook; ``ctx`` is :attr:`context`.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str] | None = None, *,
                 reducer: Reducer | None = None, on_repeat: str = "suffix", to_cpu: bool = False):
        if on_repeat not in ("suffix", "error"):
            raise ConfigError(f"on_repeat must be 'suffix' or 'error', got {on_repeat!r}")
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.reducer = reducer
        self.on_repeat = on_repeat
        self.to_cpu = to_cpu
        self.features: dict[str, Any] = {}
        self.context: BatchContext | None = None
        self._calls: dict[str, int] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> FeatureCapture:
        modules = dict(self.model.named_modules())
        # a new top-level forward starts a new record (so repeat counters never leak across passes)
        self._handles.append(self.model.register_forward_pre_hook(lambda module, args: self.clear()))
        for name in self.layers:
            self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget what was captured (done automatically when a forward pass of the model starts)."""
        self.features = {}
        self._calls = {}

    def _make_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            count = self._calls.get(name, 0)
            self._calls[name] = count + 1
            if count and self.on_repeat == "error":
                raise ConfigError(f"layer {name!r} was called {count + 1} times in one forward pass; "
                                  "use on_repeat='suffix' to record calls as name, name#1, …")
            key = name if count == 0 else f"{name}#{count}"
            tensor = _first_tensor(output, name)
            self.features[key] = self._store(tensor, key)

        return hook

    def _store(self, tensor: Tensor, key: str) -> Any:
        tensor = tensor.detach()
        if self.reducer is None:
            value: Any = tensor.clone()
        else:
            ctx = self.context or BatchContext(torch.arange(tensor.shape[0]), _spatial(tensor))
            value = _unalias(self.reducer(tensor, replace(ctx, layer=key)), tensor)
        return _map_tensors(value, lambda t: t.cpu()) if self.to_cpu else value


def _first_tensor(output: Any, name: str) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, Tensor):
                return item
    raise ConfigError(f"layer {name!r} returned {type(output).__name__}, not a tensor; pick another layer")


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:  # pragma: no cover - exotic tensors without storage
        return False


def _unalias(value: Any, source: Tensor) -> Any:
    return _map_tensors(value, lambda t: t.clone() if _shares_memory(t, source) else t)


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


def _spatial(tensor: Tensor) -> tuple[int, int]:
    return (int(tensor.shape[-2]), int(tensor.shape[-1])) if tensor.dim() == 4 else (1, 1)


# ----------------------------------------------------------------------------------------------- streaming

def even_batches(n: int, batch_size: int, min_size: int = 1) -> list[slice]:
    """Split ``range(n)`` into contiguous near-equal slices of at most ``batch_size`` (never below ``min_size``).

    Where ``batch_size`` and ``min_size`` conflict (n=5, batch 4, min 4) the minimum wins: one slice of 5.
    ``even_batches(10, 4) -> [0:4, 4:7, 7:10]``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if n < min_size:
        raise ConfigError(f"need at least {min_size} samples, got {n}")
    if n == 0:
        return []
    count = max(1, min(math.ceil(n / batch_size), n // max(min_size, 1)))
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def iterate_features(model: nn.Module, images: Tensor | Iterable[Tensor], layers: str | Sequence[str] | None = None,
                     batch_size: int = 16, *, reducer: Reducer | None = None, on_repeat: str = "suffix",
                     to_cpu: bool = True, batches: Sequence[slice] | None = None) -> Iterator[dict[str, Any]]:
    """Run ``model`` over ``images`` batch by batch (no gradients) and yield ``{layer: captured}`` per batch.

    ``images`` is an ``(N, C, H, W)`` tensor (split by ``batch_size`` or by explicit ``batches`` slices) or an
    iterable of such batches. Inputs go to the model's device; captured values come back on the CPU when
    ``to_cpu``. Each batch dict lists layers in call order. A requested layer that does not run raises
    :class:`~probe.errors.ConfigError`. The model's train/eval mode is left as is (call ``model.eval()``)::

        sums = {}
        for feats in iterate_features(model, images, None, batch_size=8, reducer=pool):
            for name, v in feats.items():
                sums[name] = sums.get(name, 0) + v.sum(0)
    """
    names = resolve_layers(model, layers)
    device = model_device(model)
    start = 0
    for batch in _batches(images, batch_size, batches):
        batch_n = int(batch.shape[0])
        capture = FeatureCapture(model, names, reducer=reducer, on_repeat=on_repeat, to_cpu=to_cpu)
        capture.context = BatchContext(torch.arange(start, start + batch_n),
                                       (int(batch.shape[-2]), int(batch.shape[-1])))
        with torch.no_grad(), capture:
            model(batch.to(device))
        missing = [n for n in names if n not in capture.features]
        if missing:
            raise ConfigError(f"layer {missing[0]!r} did not run in the forward pass of {type(model).__name__}")
        start += batch_n
        yield capture.features


def _batches(images: Tensor | Iterable[Tensor], batch_size: int,
             batches: Sequence[slice] | None) -> Iterator[Tensor]:
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ConfigError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        for piece in (batches if batches is not None else even_batches(images.shape[0], batch_size)):
            yield images[piece]
    else:
        yield from images


def collect_features(model: nn.Module, images: Tensor | Iterable[Tensor],
                     layers: str | Sequence[str] | None = None, batch_size: int = 16, *,
                     reducer: Reducer | None = None, on_repeat: str = "suffix") -> dict[str, Tensor]:
    """Concatenate (along dim 0) what :func:`iterate_features` yields; pass a reducer to keep it small.

    ``collect_features(model, images, reducer=pool)`` → ``{layer: (N, C)}``. Without a reducer this holds every
    activation of every image: fine for a handful of images, the wrong tool for a large evaluation set.
    """
    parts: dict[str, list[Tensor]] = {}
    for feats in iterate_features(model, images, layers, batch_size, reducer=reducer, on_repeat=on_repeat):
        for name, value in feats.items():
            if not isinstance(value, Tensor):
                raise ConfigError(f"collect_features needs a reducer returning tensors; layer {name!r} gave "
                                  f"{type(value).__name__}")
            parts.setdefault(name, []).append(value)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}
