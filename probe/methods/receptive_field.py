"""A receptive-field bound from what a network actually runs: how far an output pixel can see in the input.

:func:`receptive_reach` runs the network once on an example under a :class:`torch.overrides.TorchFunctionMode`
and inspects every torch operation it performs. The bound is exact by construction for networks made of
*local, translation-equivariant* operations only: stride-1 convolutions and pools (the reach of each adds up:
``max(p, e − p)`` for padding ``p`` and kernel extent ``e = dilation · (k − 1)``), padding, channel
concatenation and pointwise operations (activations, arithmetic, eval-mode batch norm). Any other
operation on a feature map — a stride, an interpolation, a spatial reduction or attention (``mean`` over
H/W, ``matmul``, ``adaptive_avg_pool2d``), spatial indexing, normalisation with spatial statistics — makes
the bound unknown (``reach = None`` with the operation named in ``reason``). Summing every operation's reach
over-counts parallel branches, which keeps the bound an upper bound.

Why it matters (issue 24): an output window computed on a crop holding the window ± ``reach`` input pixels is
identical to the one computed on the full image — zero padding at the crop edge influences at most ``reach``
pixels inwards — so attribution can integrate on the crop *exactly*, without the check on two path points
that missed networks whose influence grows elsewhere on the path.

    import torch
    from torch import nn
    from probe.methods.receptive_field import receptive_reach
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 5, padding=2))
    receptive_reach(net, torch.rand(1, 3, 32, 32))      # ReachBound(reach=3, reason='local operations ...')

The trace sees the operations of one forward pass at the example's size: a network that branches on the
input size could run other operations on a crop (this is why the example should have the crop's size class;
the engine traces at the full image size and the completeness gap is still measured on full images).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["ReachBound", "receptive_reach"]

#: operations that act on every pixel independently (by ``__name__``; Tensor methods and torch functions)
POINTWISE = frozenset("""
add sub mul div true_divide rsub neg abs relu relu_ leaky_relu leaky_relu_ prelu gelu silu sigmoid tanh
hardtanh hardtanh_ elu elu_ selu celu softplus mish hardswish hardsigmoid relu6 clamp clip clamp_min
clamp_max clamp_ exp log sqrt rsqrt pow square maximum minimum where dropout alpha_dropout feature_dropout
contiguous float double half to type_as clone detach detach_ requires_grad_ sign reciprocal
__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__ __rtruediv__
__itruediv__ __neg__ __pow__ __rpow__ __abs__ add_ mul_ sub_ div_ addcmul lerp expand_as
""".split())


@dataclass(frozen=True)
class ReachBound:
    """``reach``: input pixels an output pixel can depend on in each direction (None: no bound known);
    ``reason``: why (the first non-local operation, or a summary); ``ops``: operations inspected."""

    reach: int | None
    reason: str
    ops: int = 0


def _int_pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = tuple(int(v) for v in value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _spatial(t) -> bool:
    return isinstance(t, Tensor) and t.dim() >= 3 and t.shape[-1] > 1 and t.shape[-2] > 1


def _arg(args, kwargs, index: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.reach = 0
        self.ops = 0
        self.bad: str | None = None

    def _fail(self, why: str) -> None:
        if self.bad is None:
            self.bad = why

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
        for a in args:
            if isinstance(a, (list, tuple)):
                tensors += [t for t in a if isinstance(t, Tensor)]
        if not isinstance(out, Tensor) and not (isinstance(out, (tuple, list)) and out
                                                and isinstance(out[0], Tensor)):
            return out  # sizes, dtypes, booleans: no data flows
        if not any(_spatial(t) for t in tensors):
            return out  # parameters and scalars only
        self.ops += 1
        self._inspect(func, args, kwargs)
        return out

    def _inspect(self, func, args, kwargs) -> None:  # noqa: C901 - one case per kind of operation
        name = getattr(func, "__name__", str(func))
        if func in (F.conv2d, torch.conv2d):
            weight = _arg(args, kwargs, 1, "weight")
            stride = _int_pair(_arg(args, kwargs, 3, "stride", 1))
            pad = _arg(args, kwargs, 4, "padding", 0)
            dil = _int_pair(_arg(args, kwargs, 5, "dilation", 1))
            if stride != (1, 1):
                return self._fail(f"strided convolution (stride {stride})")
            ext = [d * (k - 1) for d, k in zip(dil, weight.shape[-2:])]
            if isinstance(pad, str):
                pads = [e // 2 if pad == "same" else 0 for e in ext]
            else:
                pads = list(_int_pair(pad))
            self.reach += max(max(p, e - p) for p, e in zip(pads, ext))
        elif func in (F.avg_pool2d, F.max_pool2d) or name in (
                "avg_pool2d", "max_pool2d", "max_pool2d_with_indices"):
            kernel = _int_pair(_arg(args, kwargs, 1, "kernel_size"))
            stride = _arg(args, kwargs, 2, "stride", None)
            stride = kernel if stride is None or stride == [] else _int_pair(stride)
            pads = _int_pair(_arg(args, kwargs, 3, "padding", 0))
            if tuple(stride) != (1, 1):
                return self._fail(f"strided pooling ({name}, stride {tuple(stride)})")
            self.reach += max(max(p, k - 1 - p) for p, k in zip(pads, kernel))
        elif func is F.pad or name == "pad":
            self.reach += max((abs(int(p)) for p in _arg(args, kwargs, 1, "pad")), default=0)
        elif name in ("cat", "concat", "concatenate", "stack"):
            dim = _arg(args, kwargs, 1, "dim", 0)
            first = args[0][0] if args and isinstance(args[0], (list, tuple)) and args[0] else None
            if first is None or dim not in (1, 1 - first.dim()):
                return self._fail(f"{name} along dim {dim} (only the channel dim is local)")
        elif name == "batch_norm" or func is F.batch_norm:
            if _arg(args, kwargs, 5, "training", False):
                return self._fail("batch norm in training mode (batch statistics)")
        elif name == "__getitem__":
            index = args[1] if len(args) > 1 else None
            index = index if isinstance(index, tuple) else (index,)
            if any(not (isinstance(i, slice) and i == slice(None)) for i in index[2:]):
                return self._fail("spatial indexing (__getitem__ on H/W)")
        elif name not in POINTWISE:
            return self._fail(f"non-local or unknown operation {name!r} on a feature map")


def receptive_reach(model: nn.Module, example: Tensor) -> ReachBound:
    """Trace ``model(example)`` once (no gradients) and bound its receptive field (see module doc).

    ``example``: an input ``(1, C, H, W)`` of the size the model will see. Returns :class:`ReachBound`;
    a model that cannot run on ``example`` gets ``reach=None`` with the error in ``reason``.
    """
    if getattr(model, "croppable", True) is False:
        return ReachBound(None, "the model declares itself not croppable (croppable = False)")
    rec = _Recorder()
    try:
        with torch.no_grad(), rec:
            model(example)
    except Exception as exc:  # noqa: BLE001 - any failure means: no bound
        return ReachBound(None, f"trace failed: {type(exc).__name__}: {exc}"[:200], rec.ops)
    if rec.bad is not None:
        return ReachBound(None, rec.bad, rec.ops)
    return ReachBound(int(rec.reach), f"local operations only ({rec.ops} inspected)", rec.ops)
