"""Check a state dict against a model before loading: no load may leave weights at their initial values unsaid.

:func:`check_state` compares the model's own keys and shapes with the file's:

* a shape mismatch is always an error;
* ``strict=True`` (the default everywhere): any missing or unexpected key is an error;
* ``strict=False``: unexpected keys are tolerated (counted in the report), but a model tensor (parameter or
  persistent buffer) absent from the file would keep its *initial value*; that is refused unless its name
  matches one of ``allow_missing`` (``fnmatch`` patterns such as ``"head.*"`` or ``"*.relative_position_*"``).

The error is one line naming the file, how many tensors matched, and the first unmatched names::

    report = check_state(model.state_dict(), state, "net.pth", strict=False, allow_missing=["head.*"])
    report.summary()     # 'loaded 118/120 tensors from net.pth; kept initial values (allowed): head.weight, …'
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probe.errors import CheckpointError, one_line

_SHOW = 3


def listing(n: int, what: str, items: list[str], plural: str = "s") -> str:
    """``"3 missing keys (a, b, c, … 2 more)"``."""
    shown = ", ".join(items[:_SHOW]) + (f", … {n - _SHOW} more" if n > _SHOW else "")
    return f"{n} {what}{plural if n != 1 else ''} ({shown})"


@dataclass
class LoadReport:
    """What a load took from the file: matched/total model tensors, allowed gaps, ignored extras."""

    source: str
    matched: int
    total: int
    allowed_missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    container: str = ""
    prefix: str = ""
    output: str = ""  # the output check's lines (external networks: which output, why, behaviour)
    cloned: list[str] = field(default_factory=list)  # self-overlapping (expand()ed) tensors made contiguous

    def summary(self) -> str:
        text = f"loaded {self.matched}/{self.total} tensors from {self.source}"
        if self.container and self.container not in (".", "safetensors"):
            text += f" ({self.container})"
        if self.prefix:
            text += f", prefix {self.prefix!r} removed"
        if self.allowed_missing:
            text += "; kept initial values (allowed): " + ", ".join(self.allowed_missing[:_SHOW]) + \
                (f", … {len(self.allowed_missing) - _SHOW} more" if len(self.allowed_missing) > _SHOW else "")
        if self.unexpected:
            text += f"; ignored {len(self.unexpected)} unexpected tensor(s)"
        if self.cloned:
            text += "; " + cloned_text(self.cloned)
        return text + (f"\n{self.output}" if self.output else "")

    def to_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "total": self.total, "container": self.container, "prefix": self.prefix,
                "allowed_missing": list(self.allowed_missing), "unexpected": len(self.unexpected),
                "cloned": list(self.cloned)}


def _patterns(allow_missing: str | Iterable[str] | None) -> list[str]:
    if allow_missing is None:
        return []
    if isinstance(allow_missing, str):
        return [allow_missing]
    return [str(p) for p in allow_missing]


def problems(expected: Mapping[str, Any], state: Mapping[str, Any], strict: bool,
             allow_missing: str | Iterable[str] | None = None) -> tuple[int, str]:
    """(number of problems, one-line description) of loading ``state`` into a model whose state is ``expected``."""
    patterns = _patterns(allow_missing)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    refused = [k for k in missing if not any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    parts = []
    matched = len(expected) - len(missing) - len(shapes)
    if strict:
        if missing:
            parts.append(listing(len(missing), "missing key", missing))
        if unexpected:
            parts.append(listing(len(unexpected), "unexpected key", unexpected))
    elif refused:
        parts.append(f"only {matched}/{len(expected)} model tensors are in the file; "
                     + listing(len(refused), "tensor", refused)
                     + " would keep their initial values (allow them by pattern with allow_missing / "
                       "--allow-missing, or fix the key names)")
    if shapes:
        parts.append(listing(len(shapes), "shape mismatch", shapes, plural="es"))
    count = len(shapes) + (len(missing) + len(unexpected) if strict else len(refused))
    return count, "; ".join(parts)


def check_state(expected: Mapping[str, Any], state: Mapping[str, Any], source: str, strict: bool = True,
                allow_missing: str | Iterable[str] | None = None, container: str = "",
                prefix: str = "") -> LoadReport:
    """Raise :class:`CheckpointError` (``"<source>: …"``) unless ``state`` loads fully; else a :class:`LoadReport`.

    ``allow_missing`` patterns only matter with ``strict=False``.
    """
    count, text = problems(expected, state, strict, allow_missing)
    if count:
        raise CheckpointError(f"{source}: weights do not fit the model: {text}")
    missing = [k for k in expected if k not in state]
    return LoadReport(source=str(source), matched=len(expected) - len(missing), total=len(expected),
                      allowed_missing=missing, unexpected=[k for k in state if k not in expected],
                      container=container, prefix=prefix)


def cloned_text(names: list[str]) -> str:
    """``"cloned 8 expanded parameters (eta11, eta12, eta21, … 5 more) so weights can be copied into them"``."""
    return "cloned " + listing(len(names), "expanded parameter", names) + " so weights can be copied into them"


def _overlaps(t: Any) -> bool:
    """Whether elements of ``t`` share memory (an ``expand()``ed tensor: stride 0 in a dimension of size > 1)."""
    import torch

    if t.is_sparse or t.device.type == "meta" or t.numel() < 2:
        return False
    if any(stride == 0 and size > 1 for stride, size in zip(t.stride(), t.shape)):
        return True
    return torch._debug_has_internal_overlap(t) != 0  # 1: overlaps, 2: too complex to tell (clone anyway)


def clone_overlapping(model: Any) -> list[str]:
    """Replace, in place, every parameter and buffer of ``model`` whose elements share memory
    (``nn.Parameter(w.expand(...))``, as RCDNet builds its step sizes) by a contiguous clone — still an
    ``nn.Parameter`` with the same ``requires_grad``; tied tensors stay tied. ``load_state_dict`` cannot copy
    into such tensors ("more than one element of the written-to tensor refers to a single memory location").
    Returns the dotted names replaced (in ``named_modules`` order)."""
    import torch
    from torch import nn

    done: dict[int, Any] = {}
    names: list[str] = []
    for prefix, module in model.named_modules():
        for table in (module._parameters, module._buffers):
            for key, t in list(table.items()):
                if t is None or (id(t) not in done and not _overlaps(t)):
                    continue
                if id(t) not in done:
                    copy = t.detach().clone(memory_format=torch.contiguous_format)
                    done[id(t)] = nn.Parameter(copy, requires_grad=t.requires_grad) \
                        if isinstance(t, nn.Parameter) else copy
                    names.append(f"{prefix}.{key}" if prefix else key)
                table[key] = done[id(t)]
    return names


def load_error(source: str, model: Any, exc: RuntimeError) -> CheckpointError:
    """One short line for a ``load_state_dict`` RuntimeError: the tensors it names (first few) and the first
    cause, cut to 200 characters (torch repeats it per tensor in one long message)."""
    import re

    text = str(exc)
    names = re.findall(r'parameter named "([^"]+)"', text)
    cause = re.search(r"an exception occurred : \((.*?)\)\.?\s*(?:\n|$)", text)
    detail = one_line(cause.group(1) if cause else text.split("\n", 1)[-1]).strip("'\",")
    detail = detail if len(detail) <= 200 else detail[:199] + "…"
    which = f" for {listing(len(dict.fromkeys(names)), 'tensor', list(dict.fromkeys(names)))}" if names else ""
    return CheckpointError(f"{source}: copying the weights into {type(model).__name__} failed{which}: {detail}")
