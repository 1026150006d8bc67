"""Which modules a network runs, in forward order, with their output shapes; the default probe points.

::

    from probe.models.trace import trace_modules, default_layers
    rows = trace_modules(net, (1, 3, 64, 64))   # [ModuleCall("conv_first", "Conv2d", (1, 64, 64, 64)), ...]
    default_layers(net)                         # e.g. ['conv_first', 'body.0', ..., 'conv_last'] (at most 8)

**Default selection** for a network without HookPoints (documented in docs/your-own-network.md): the top-level blocks
(the modules that run in the forward pass with no running ancestor: ``ModuleList`` items count, the unused
list itself does not) that output a feature map (N, C, H, W) or token sequence (N, L, C), in forward order.
While fewer than 3 qualify, each is replaced by its own top-level blocks (e.g. a lone ``body``
``Sequential`` by its items). At most ``max_layers`` (8) evenly spaced ones are kept, always including the
first and the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ModuleCall:
    name: str  # as in named_modules()
    kind: str  # class name
    shape: tuple[int, ...] | None  # output shape of the first call (first tensor of a tuple/list/dict)
    calls: int = 1
    params: int = 0


def _first_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def trace_modules(model: nn.Module, shape: tuple[int, ...] = (1, 3, 64, 64)) -> list[ModuleCall]:
    """Run one forward pass on a constant grey image of ``shape`` and record every submodule call in order.

    Order is the order in which modules *start* (a parent before its children, as code reads). Modules that
    never run are left out. The model's train/eval mode is kept; no gradients are computed.
    """
    calls: dict[str, ModuleCall] = {}
    handles = []

    def pre_for(name: str, module: nn.Module):
        def pre(_module: nn.Module, _inputs: object) -> None:
            if name in calls:
                calls[name].calls += 1
            else:
                calls[name] = ModuleCall(name, type(module).__name__, None,
                                         params=sum(p.numel() for p in module.parameters(recurse=False)))

        return pre

    def post_for(name: str):
        def post(_module: nn.Module, _inputs: object, output: object) -> None:
            if calls[name].shape is None:
                tensor = _first_tensor(output)
                calls[name].shape = tuple(tensor.shape) if tensor is not None else None

        return post

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre_for(name, module)))
            handles.append(module.register_forward_hook(post_for(name)))
    try:
        param = next((p for p in model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.full(shape, 0.5, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return list(calls.values())


def _is_feature(call: ModuleCall, batch: int) -> bool:
    return call.shape is not None and len(call.shape) in (3, 4) and call.shape[0] == batch


def _topmost(names: list[str], within: str | None = None) -> list[str]:
    """Names (in order) with no called ancestor below ``within`` (None: the root)."""
    called = set(names)
    out = []
    for name in names:
        if within is not None and not name.startswith(within + "."):
            continue
        parts = name.split(".")
        start = 0 if within is None else within.count(".") + 1
        ancestors = {".".join(parts[:k]) for k in range(start + 1, len(parts))}
        if not ancestors & called:
            out.append(name)
    return out


def default_layers(model: nn.Module, shape: tuple[int, ...] = (1, 3, 64, 64), max_layers: int = 8) -> list[str]:
    """The default probe points of ``model`` (see the module docstring); [] if nothing qualifies."""
    rows = trace_modules(model, shape)
    names = [r.name for r in rows]
    feature = {r.name for r in rows if _is_feature(r, shape[0])}
    chosen = [n for n in _topmost(names) if n in feature]
    while len(chosen) < 3:  # too few top-level blocks: open the containers one level
        opened = []
        for name in chosen:
            inner = [n for n in _topmost(names, name) if n in feature]
            opened.extend(inner or [name])
        if opened == chosen:
            break
        chosen = opened
    if len(chosen) <= max_layers:
        return chosen
    step = (len(chosen) - 1) / (max_layers - 1)
    return [chosen[round(i * step)] for i in range(max_layers)]
