"""Read the weights out of the checkpoint containers that restoration code bases write.

:func:`read_state` returns a plain ``{name: tensor}`` state dict and a note of where in the file it came from.

* ``.pth`` / ``.pt`` / ``.ckpt`` are read with ``torch.load(..., weights_only=True)`` only (a pickle holding
  anything but tensors and plain containers is refused, never executed); safetensors with ``safe_open``.
* Containers, in order of preference: BasicSR ``params_ema`` (the EMA weights; preferred), ``params``,
  then ``state_dict``, ``model``, ``net``, ``net_g``, ``generator``, ``model_state_dict``; they may nest
  (Lightning: ``{"state_dict": {"model.x": …}}``). A plain ``name → tensor`` mapping is used as is.
* Non-tensor entries beside the tensors (``epoch``, ``iter``, ``optimizer`` …) are ignored.
* An optimizer state alone (``state`` + ``param_groups``) is refused with a clear line.
* :func:`strip_prefixes` removes wrapper prefixes that every key carries (``module.`` from DataParallel,
  ``_orig_mod.`` from ``torch.compile``, ``model.``, ``net_g.``, ``net.``, ``generator.``), repeatedly.

Every failure is a one-line :class:`~probe.errors.CheckpointError` that starts with the file.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from probe.errors import CheckpointError, one_line

#: Container keys tried in this order (BasicSR's EMA weights first).
CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "net_g", "generator",
                  "model_state_dict", "network")
#: Wrapper prefixes stripped when every key carries one (DataParallel, torch.compile, Lightning, BasicSR).
PREFIXES = ("module.", "_orig_mod.", "model.", "net_g.", "net.", "generator.")


def looks_like_safetensors(path: Path) -> bool:
    """8-byte little-endian header length, then a JSON object that fits in the file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < path.stat().st_size


def read_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors (refused pickles named)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found or "global" in text.lower():
            what = found.group(1) if found else "a non-tensor object"
            raise CheckpointError(f"{path}: refused: the pickle holds {what}, which weights-only loading does "
                                  "not allow (probe never unpickles arbitrary objects)") from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint "
                              f"({one_line(text.splitlines()[-1] if text else exc)})") from exc
    except Exception as exc:  # RuntimeError (bad zip), EOFError, OSError, ...
        first = str(exc).split(". ")[0]
        raise CheckpointError(f"{path}: truncated or corrupt torch checkpoint "
                              f"({type(exc).__name__}: {one_line(first)})") from exc


def _tensors(obj: Any) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "param_groups" in obj and "state" in obj


def find_state(obj: Any, path: Path, depth: int = 0) -> tuple[dict[str, Tensor], str]:
    """The state dict inside a loaded container and where it was found (``"params_ema"``, ``"."`` …)."""
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and not _is_optimizer(inner):
                try:
                    state, where = find_state(inner, path, depth + 1)
                except CheckpointError:
                    continue
                return state, key if where == "." else f"{key}/{where}"
        tensors = _tensors(obj)
        if tensors:
            return tensors, "."
    if depth:
        raise CheckpointError(f"{path}: no tensors")
    if _is_optimizer(obj) or (isinstance(obj, Mapping) and obj and all(
            _is_optimizer(v) or k in ("optimizer", "optimizers", "optimizer_states", "epoch", "iter", "step")
            for k, v in obj.items())):
        raise CheckpointError(f"{path}: holds an optimizer state only (state/param_groups), not model weights; "
                              "pass the file with the network's weights")
    top = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{path}: no state dict found (expected {', '.join(CONTAINER_KEYS[:4])}, … or a "
                          f"name → tensor mapping; top level: {top})")


def strip_prefixes(state: Mapping[str, Tensor], expected: set[str] | None = None) -> tuple[dict[str, Tensor], str]:
    """Remove wrapper prefixes carried by every key (repeatedly); returns (state, the prefixes removed).

    With ``expected`` (the model's own keys), a prefix is only removed while keys do not already match, and
    any one leading component shared by every key (``"anything."``) is removed when that makes keys match.
    """
    state = dict(state)
    removed = ""
    while state:
        if expected is not None and set(state) <= expected:
            break
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None and expected is not None:
            first = {k.split(".", 1)[0] for k in state}
            if len(first) == 1 and all("." in k for k in state):
                candidate = next(iter(first)) + "."
                stripped = {k[len(candidate):] for k in state}
                if len(stripped & expected) > len(set(state) & expected):
                    prefix = candidate
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
        removed += prefix
    return state, removed


def read_state(path: Path, key: str | None = None) -> tuple[dict[str, Tensor], dict[str, str], str]:
    """(state dict, safetensors metadata or {}, container note) of a foreign or probe checkpoint file.

    ``key``: the container entry to take (BasicSR's ``param_key_g``: ``params`` or ``params_ema``) instead of
    the preferred order; a file without it is one CheckpointError naming the keys it has."""
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                meta = dict(handle.metadata() or {})
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as exc:  # SafetensorError, OSError, ...: the header or data region is unusable
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({one_line(exc)})") from exc
        if not state:
            raise CheckpointError(f"{path}: the safetensors file holds no tensors")
        return state, meta, "safetensors"
    obj = read_torch_file(path)
    if key is not None:
        if not isinstance(obj, Mapping) or not isinstance(obj.get(key), Mapping):
            top = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path}: no entry {key!r} (param_key_g) in the checkpoint; top level: {top}")
        state, where = find_state(obj[key], path, 1)
        return state, {}, key if where == "." else f"{key}/{where}"
    state, where = find_state(obj, path)
    return state, {}, where


def to_float32(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Floating-point tensors (fp16, bf16, fp64) as float32; integer buffers untouched."""
    return {k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v) for k, v in state.items()}


def float_dtype(state: Mapping[str, Tensor]) -> torch.dtype:
    """The most common floating-point dtype among ``state``'s tensors (float32 if none)."""
    counts: dict[torch.dtype, int] = {}
    for value in state.values():
        if value.is_floating_point():
            counts[value.dtype] = counts.get(value.dtype, 0) + value.numel()
    return max(counts, key=counts.__getitem__) if counts else torch.float32
