"""Attribution objectives: the scalar per example that an attribution method explains.

captum (and our own path-integrated-gradients engine) attribute *one scalar per example*; an image-to-image
network has a whole image as output, so every attribution declares which scalar it explains. An objective is
a registered class in :data:`OBJECTIVES`; an instance is called as ``objective(output, inputs, context)``
and returns a ``(N,)`` tensor, where

- ``output`` is the network output ``(N, C, H, W)``,
- ``inputs`` is the network input ``(N, C, H, W)`` (the point on the attribution path, so that objectives
  such as ``removed`` = input − output are true functions of the input),
- ``context`` is a dict of per-example tensors (first dim ``N``), only the keys in ``objective.needs``:
  ``"window"`` (N,1,H,W) 0/1 window mask, ``"pixel"`` (N,1,H,W) one-hot window centre, ``"clean"``
  (N,C,H,W) the ground truth, ``"mask"`` (N,1,H,W) the binary rain mask.

All context entries are spatial masks or images, never coordinates, so that attribution engines can expand,
index and crop them like the inputs. :func:`make_context` builds them; :func:`probe.methods.windows.default_windows`
places one window on rain streaks and one off them::

    import torch
    from probe.methods.objectives import make_objective, make_context
    from probe.methods.windows import default_windows
    mask = torch.zeros(1, 1, 32, 32); mask[..., 4:12, 20:24] = 1
    windows = default_windows(mask, size=8)            # {"on": Window, "off": Window}
    objective = make_objective("lam")
    ctx = make_context(objective, windows["on"], shape=(32, 32))
    out = torch.rand(1, 3, 32, 32)
    objective(out, out, ctx).shape                      # torch.Size([1])
    objective.to_json()                                 # '{"name": "lam", "params": {"eps": 1e-10}}'

Objectives are stored with every result as ``objective.to_json()`` (name + resolved parameters).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
from torch import Tensor

from probe.errors import ConfigError, DataError
from probe.methods.windows import Window
from probe.registry import Registry

OBJECTIVES = Registry("attribution objective")

CONTEXT_KEYS = ("window", "pixel", "clean", "mask")


def make_context(objective: Objective, window: Window | None, shape: tuple[int, int], *,
                 clean: Tensor | None = None, mask: Tensor | None = None,
                 device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Build the context dict an objective needs (only its ``needs`` keys), on ``device``."""
    ctx: dict[str, Tensor] = {}
    for key in objective.needs:
        if key in ("window", "pixel"):
            if window is None:
                raise ConfigError(f"objective {objective.name!r} needs a window")
            ctx[key] = window.mask(shape, device) if key == "window" else window.centre_mask(shape, device)
        elif key == "clean":
            if clean is None:
                raise DataError(f"objective {objective.name!r} needs the clean (ground-truth) images")
            ctx[key] = clean.to(device)
        elif key == "mask":
            if mask is None:
                raise DataError(f"objective {objective.name!r} needs the degradation mask")
            ctx[key] = mask.float().to(device)
    return ctx


# ------------------------------------------------------------------------------------------ objectives
class Objective:
    """Base class: a scalar per example of ``(output, inputs, context)``; parameters validated on init."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: output pixels beyond the window the objective reads (LAM's finite differences: 1); None = unknown.
    #: With the network's receptive field it bounds the input region an attribution may crop to.
    reach: ClassVar[int | None] = None

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for objective {self.name!r}; "
                              f"allowed: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        for key, allowed in self.choices.items():
            if self.params[key] not in allowed:
                raise ConfigError(f"objective {self.name!r}: {key!r} must be one of {list(allowed)}, "
                                  f"got {self.params[key]!r}")

    @property
    def uses_window(self) -> bool:
        """Whether the objective depends on the window position (else one ``full`` window suffices)."""
        return "window" in self.needs or "pixel" in self.needs

    def __call__(self, output: Tensor, inputs: Tensor, context: dict[str, Tensor]) -> Tensor:
        missing = [k for k in self.needs if k not in context]
        if missing:
            raise DataError(f"objective {self.name!r} needs context {missing[0]!r}")
        return self.compute(output, inputs, context)

    def compute(self, output: Tensor, inputs: Tensor, context: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def to_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)

    def __repr__(self) -> str:
        return f"Objective({self.to_json()})"


def _masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).flatten(1).sum(1)


@OBJECTIVES.register("pixel")
class PixelObjective(Objective):
    """Output value at the window's centre pixel; ``channel`` None sums the channels."""

    description = "output at the window centre pixel"
    reach = 0
    needs = ("pixel",)
    defaults = {"channel": None}

    def compute(self, output, inputs, context):
        ch = self.params["channel"]
        values = output if ch is None else output[:, int(ch):int(ch) + 1]
        return _masked_sum(values, context["pixel"])


@OBJECTIVES.register("window_sum")
class WindowSumObjective(Objective):
    """Sum (or mean) of the output over the window and channels."""

    description = "output summed inside the window"
    reach = 0
    needs = ("window",)
    defaults = {"reduce": "sum"}
    choices = {"reduce": ("sum", "mean")}

    def compute(self, output, inputs, context):
        total = _masked_sum(output, context["window"])
        if self.params["reduce"] == "mean":
            total = total / (context["window"].flatten(1).sum(1) * output.shape[1]).clamp_min(1.0)
        return total


@OBJECTIVES.register("lam")
class LAMObjective(Objective):
    """LAM's gradient energy: Σ over the window and channels of sqrt(Δh² + Δw² + eps) of the output.

    Δh = o[y+1, x] − o[y, x], Δw = o[y, x+1] − o[y, x] on the (H−1)×(W−1) grid as in Gu & Dong's
    ``attr_grad``; ``eps`` (default 1e-10) keeps the gradient finite where the output is flat (LAM itself
    sets NaN gradients to 0 afterwards).
    """

    description = "LAM gradient energy inside the window"
    reach = 1
    needs = ("window",)
    defaults = {"eps": 1e-10}

    def compute(self, output, inputs, context):
        dh = output[:, :, 1:, :-1] - output[:, :, :-1, :-1]
        dw = output[:, :, :-1, 1:] - output[:, :, :-1, :-1]
        energy = torch.sqrt(dh * dh + dw * dw + float(self.params["eps"]))
        return _masked_sum(energy, context["window"][:, :, :-1, :-1])


@OBJECTIVES.register("lam_removed")
class LAMRemovedObjective(LAMObjective):
    """LAM's gradient energy of what the network removed, ``input − output``, inside the window (the
    default of ``method = "lam"``: an identity network removes nothing and gets no attribution, where the
    output's own energy would describe the input)."""

    description = "LAM gradient energy of the removed part (input - output) inside the window"

    def compute(self, output, inputs, context):
        return super().compute(inputs - output, inputs, context)


@OBJECTIVES.register("removed")
class RemovedObjective(Objective):
    """What the network removed inside the window: Σ (input − output) over the window and channels."""

    description = "input minus output summed inside the window"
    reach = 0
    needs = ("window",)

    def compute(self, output, inputs, context):
        return _masked_sum(inputs - output, context["window"])


class _MaskObjective(Objective):
    defaults = {"quantity": "removed"}
    choices = {"quantity": ("removed", "energy")}
    needs = ("mask",)
    invert: ClassVar[bool] = False

    def compute(self, output, inputs, context):
        mask = context["mask"]
        if self.invert:
            mask = 1.0 - mask
        values = inputs - output if self.params["quantity"] == "removed" else output * output
        return _masked_sum(values, mask)


@OBJECTIVES.register("mask_rain")
class MaskRainObjective(_MaskObjective):
    """Over the rain pixels (mask = 1): Σ (input − output) (``quantity="removed"``) or Σ output²."""

    description = "removed part (or output energy) over rain pixels"


@OBJECTIVES.register("mask_background")
class MaskBackgroundObjective(_MaskObjective):
    """Over the non-rain pixels (mask = 0): Σ (input − output) or Σ output²."""

    description = "removed part (or output energy) over background pixels"
    invert = True


@OBJECTIVES.register("loss")
class LossObjective(Objective):
    """L1 loss against the ground truth: mean |output − clean| over the image or the window."""

    description = "L1 loss against the clean image"
    reach = 0
    defaults = {"region": "image"}
    choices = {"region": ("image", "window")}

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("clean", "window") if self.params["region"] == "window" else ("clean",)

    def compute(self, output, inputs, context):
        err = (output - context["clean"]).abs()
        if self.params["region"] == "window":
            win = context["window"]
            return _masked_sum(err, win) / (win.flatten(1).sum(1) * err.shape[1]).clamp_min(1.0)
        return err.flatten(1).mean(1)


def make_objective(name: str, **params: Any) -> Objective:
    """Instantiate a registered objective: ``make_objective("loss", region="window")``."""
    cls = OBJECTIVES.get(name)
    return cls(**params)


def objective_from_json(text: str) -> Objective:
    """Rebuild an objective from :meth:`Objective.to_json` output."""
    try:
        spec = json.loads(text)
        return make_objective(spec["name"], **spec.get("params", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"bad objective description {text!r}: {exc}") from exc


__all__ = ["CONTEXT_KEYS", "OBJECTIVES", "Objective", "make_context", "make_objective", "objective_from_json"]
