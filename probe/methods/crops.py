"""Where attribution may integrate on a crop of the image, exactly (issue 24).

:func:`plan_receptive_field`: the crop is the objective's region (its ``window`` / ``pixel`` masks) ± the
network's receptive-field reach (:mod:`probe.methods.receptive_field`) + the objective's own reach
(:attr:`probe.methods.objectives.Objective.reach`) — exact by construction. :func:`support_grow` and
:func:`crop_from_boxes` serve the engine's fallback, the exact test on the first image
(:func:`probe.methods.integrated_gradients.path_integrated_gradients`, ``crop="auto"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["CropPlan", "crop_from_boxes", "crop_rows", "is_spatial", "plan_receptive_field", "region_boxes",
           "support_grow"]


@dataclass
class CropPlan:
    """Per-example crop corners and one shared crop size used by the engine (``crop="auto"``)."""

    top: Tensor
    left: Tensor
    height: int
    width: int

    def describe(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "top": self.top.tolist(),
                "left": self.left.tolist()}


def crop_rows(t: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    return torch.stack([t[i, ..., int(y):int(y) + h, int(x):int(x) + w]
                        for i, (y, x) in enumerate(zip(top.tolist(), left.tolist()))])


def is_spatial(t: Any, hw: tuple[int, int]) -> bool:
    return isinstance(t, Tensor) and t.dim() >= 3 and tuple(t.shape[-2:]) == hw


def region_boxes(forward: Any, extra: tuple[Any, ...], hw: tuple[int, int]) -> Tensor | None:
    """Per-example bounding boxes ``(N, 4)`` = [y0, x0, y1, x1) of where the objective looks on the output
    (the union of its ``window`` / ``pixel`` context masks); None when the objective has no such mask."""
    keys = tuple(getattr(forward, "context_keys", ()))
    masks = [e for k, e in zip(keys, extra) if k in ("window", "pixel") and is_spatial(e, hw)]
    if not masks:
        return None
    region = torch.stack([m.flatten(1, -3).ne(0).any(1) if m.dim() == 4 else m.ne(0) for m in masks]).any(0)
    boxes = []
    for r in region:
        rows = torch.nonzero(r.any(1)).flatten()
        cols = torch.nonzero(r.any(0)).flatten()
        if rows.numel() == 0:
            return None
        boxes.append([int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1])
    return torch.tensor(boxes)


def crop_from_boxes(boxes: Tensor, grow: tuple[int, int, int, int], hw: tuple[int, int], align: int,
                     max_fraction: float) -> tuple[CropPlan | None, str]:
    """One shared crop size holding every box grown by ``grow`` = (up, left, down, right) pixels."""
    h, w = hw
    up, lf, dn, rt = grow
    y0 = (boxes[:, 0] - up).clamp_min(0)
    x0 = (boxes[:, 1] - lf).clamp_min(0)
    y1 = (boxes[:, 2] + dn).clamp_max(h)
    x1 = (boxes[:, 3] + rt).clamp_max(w)
    ch = min(h, int(math.ceil(int((y1 - y0).max()) / align) * align))
    cw = min(w, int(math.ceil(int((x1 - x0).max()) / align) * align))
    if ch * cw > max_fraction * h * w:
        return None, f"dependency region {ch}x{cw} is most of the {h}x{w} image"
    return CropPlan(torch.minimum(y0, torch.tensor(h - ch)), torch.minimum(x0, torch.tensor(w - cw)), ch, cw), ""


def plan_receptive_field(forward: Any, inputs: tuple[Tensor, ...], extra: tuple[Any, ...], align: int,
                          max_fraction: float) -> tuple[CropPlan | None, str, dict[str, Any]]:
    """Crop = objective region ± (network reach + objective reach): exact by construction (see
    :mod:`probe.methods.receptive_field`)."""
    from probe.methods.receptive_field import receptive_reach

    model, objective = getattr(forward, "model", None), getattr(forward, "objective", None)
    x0 = inputs[0]
    hw = (int(x0.shape[-2]), int(x0.shape[-1]))
    obj_reach = getattr(objective, "reach", None)
    if model is None or objective is None:
        return None, "no receptive-field bound: the forward is not an ObjectiveForward", {}
    if obj_reach is None:
        return None, f"no receptive-field bound: objective {getattr(objective, 'name', '?')!r} has no " \
                     "known spatial reach", {}
    boxes = region_boxes(forward, extra, hw)
    if boxes is None:
        return None, "the objective looks at no window (nothing to crop to)", {}
    example = inputs[0][:1].detach()
    for extra_input in inputs[1:]:
        example = example + extra_input[:1].detach()
    bound = receptive_reach(model, example)
    if bound.reach is None:
        return None, f"no receptive-field bound: {bound.reason}", {}
    r = int(bound.reach) + int(obj_reach)
    plan, why = crop_from_boxes(boxes, (r, r, r, r), hw, align, max_fraction)
    return plan, why or f"receptive field: network reach {bound.reach} px + objective reach {obj_reach} px", \
        {"network_reach": int(bound.reach), "objective_reach": int(obj_reach)}


def support_grow(attr: tuple[Tensor, ...], box: Tensor, margin: int) -> tuple[int, int, int, int] | None:
    """How far (up, left, down, right) the nonzero attribution of one example reaches beyond its region box."""
    support = torch.stack([a[0].ne(0).flatten(0, -3).any(0) for a in attr]).any(0)
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        return None
    y0, x0, y1, x1 = (int(v) for v in box)
    return (max(0, y0 - int(rows[0])) + margin, max(0, x0 - int(cols[0])) + margin,
            max(0, int(rows[-1]) + 1 - y1) + margin, max(0, int(cols[-1]) + 1 - x1) + margin)
