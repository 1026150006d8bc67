"""A fake accelerator for CPU tests: tensors "on the device" are CPU tensors wrapped in a subclass whose
``device`` reads ``meta``; every op that mixes them with plain (host) tensors of more than 0 dimensions raises
the same error CUDA raises (``Expected all tensors to be on the same device``), ``.numpy()`` on them fails as on
CUDA, and ``torch.Generator(device="meta")`` gives a generator for it (a CPU one underneath: unlike CUDA, a CPU
generator passed to a factory on the fake device is not refused).

::

    with fake_accelerator() as dev:          # dev == torch.device("meta")
        model.to(dev); probe.run(model, data)

This catches, on a machine without a GPU, the whole class of "one tensor was left on the CPU" faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

FAKE = torch.device("meta")


class OnDevice(torch.Tensor):
    """A CPU tensor that pretends to live on the accelerator."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> OnDevice:
        out = torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=FAKE, requires_grad=elem.requires_grad)
        out.elem = elem
        return out

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"OnDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        with _Mode():
            return func(*args, **(kwargs or {}))


def _wrap(t):
    return OnDevice(t) if isinstance(t, torch.Tensor) and not isinstance(t, OnDevice) else t


def _unwrap(t):
    return t.elem if isinstance(t, OnDevice) else t


_RealGenerator = torch.Generator


class _AnyGenerator(type(torch.Generator)):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _RealGenerator)


class _Generator(_RealGenerator, metaclass=_AnyGenerator):
    """Stands in for ``torch.Generator`` inside the block: ``device="meta"`` gives a device generator."""

    def __new__(cls, device: str | torch.device = "cpu"):
        if torch.device(device).type == "meta":
            return _RealGenerator.__new__(_DeviceGenerator)
        return _RealGenerator.__new__(_RealGenerator, device)

    def __init__(self, device: str | torch.device = "cpu"):
        pass


class _DeviceGenerator(_RealGenerator):
    """A CPU generator standing for a generator on the fake accelerator."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return FAKE


_HOST_INDEX_OPS = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default,
                   torch.ops.aten.index_put_.default, torch.ops.aten._index_put_impl_.default}
_COPY_OPS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


class _Mode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        flat = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        on = [a for a in flat if isinstance(a, OnDevice)]
        host = [a for a in flat if not isinstance(a, OnDevice) and a.dim() > 0]
        if func in _HOST_INDEX_OPS:  # CUDA accepts host index tensors in advanced indexing (x[idx])
            indices = {id(t) for t in torch.utils._pytree.tree_leaves(args[1]) if isinstance(t, torch.Tensor)}
            host = [a for a in host if id(a) not in indices]
        target = kwargs.get("device")
        to_fake = target is not None and torch.device(target).type == "meta"
        if func in _COPY_OPS:
            if func is torch.ops.aten._to_copy.default:
                if target is not None:
                    kwargs["device"] = torch.device("cpu")
                out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
                src_fake = isinstance(args[0], OnDevice)
                fake = to_fake or (target is None and src_fake)
                return OnDevice(out) if fake else out
            dst, src = args[0], args[1]
            if isinstance(dst, OnDevice) != isinstance(src, OnDevice):  # copy_ across devices is allowed
                pass
            func(_unwrap(dst), _unwrap(src), *args[2:], **kwargs)
            return dst
        if func is torch.ops.aten._local_scalar_dense.default:
            return func(*tree_map(_unwrap, args))
        if on and host:
            shapes = [tuple(h.shape) for h in host]
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"meta and cpu! ({func}, host tensor shapes {shapes})")
        if to_fake:
            kwargs["device"] = torch.device("cpu")
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if on or to_fake:
            same = {id(a.elem): a for a in on}
            return tree_map(lambda t: same.get(id(t), _wrap(t)) if isinstance(t, torch.Tensor) else t, out)
        return out


@contextmanager
def fake_accelerator() -> Iterator[torch.device]:
    """Within the block, ``.to("meta")`` / ``device="meta"`` put tensors on the fake accelerator."""
    torch.Generator = _Generator  # type: ignore[misc]
    try:
        with _Mode():
            yield FAKE
    finally:
        torch.Generator = _RealGenerator  # type: ignore[misc]
