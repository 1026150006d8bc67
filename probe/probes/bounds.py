"""Bounds that keep probes in bounded memory on full-size test images (481 × 321 Rain100L/H, 1024² …).

Three rules, each recorded where it applies (never silently):

* **Pixels per forward pass.** A probe's ``batch_size`` counts images, so on full-size images one forward pass
  of 16–32 images would hold 16–32 full feature maps per layer. :func:`images_per_forward` caps a batch at
  ``max(1, FORWARD_PIXELS // (H·W))`` images (``PROBE_FORWARD_PIXELS`` overrides the default of 2²⁰ pixels:
  64 images of 128², 6 of 481 × 321); the same cap applies to the rows (example × path step) per
  forward/backward of ``attribution`` and the perturbed copies per forward of ``cem``
  (``internal_batch_size``; cem also builds its copies one chunk at a time), and to ``predict``
  (generalization, decomposition). Default-size evaluation sets (128² patches, batches ≤ 32) are below the
  bound, so their results are unchanged. Where the bound lowers a batch, the probe's arrays carry
  ``batch_bound`` (text) in their attrs. For CKA's ``"image"`` convention the batch is also the HSIC minibatch,
  so the bound changes the estimate (a minibatch estimate, ``n_batches`` in its attrs) — the text says so.
* **Images per expensive probe.** ``attribution``, ``cem``, ``activations``, ``cka`` and ``ddr`` use the first
  ``n_images`` (``n_backgrounds`` for ddr) images of each split, in the evaluation set's order (for folders:
  natural sorted order of the pairs, listed in the eval info); :func:`image_choice` is the sentence stored as
  ``images`` in their attrs and printed by ``probe measure`` in the load summary (:func:`plan_lines`).
* **Context of an intervention map.** ``cem`` intervenes on every block of the image: (H/b)·(W/b) blocks ×
  ~20 draws, each a forward pass of the whole image, so its cost grows as (H·W)². On images larger than its
  ``context`` (128 px by default; None: whole images) each map is computed on a ``context`` × ``context`` crop
  centred on the ROI (:func:`crop_around`): ~(H·W / context²)² times fewer pixels through the network (≈ 90×
  for 481 × 321). The network then sees the crop, not the whole image, and an effect farther than the crop's
  edge cannot appear (``effect_reach`` ≤ context): the ``context`` attr says so, ``context_box`` where each
  crop lies. Default-size evaluation sets (≤ 128 px) are whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from probe.errors import ConfigError

#: Default bound on the pixels of one forward pass (images × H × W).
FORWARD_PIXELS = 1 << 20

#: The image-count parameter of each expensive probe.
IMAGE_PARAMS = {"attribution": "n_images", "cem": "n_images", "activations": "n_images", "cka": "n_images",
                "ddr": "n_backgrounds"}


def forward_pixels() -> int:
    """The bound in pixels: ``PROBE_FORWARD_PIXELS`` if set (a positive integer), else :data:`FORWARD_PIXELS`.
    Raises :class:`ConfigError` for a malformed value."""
    text = os.environ.get("PROBE_FORWARD_PIXELS", "").strip()
    if not text:
        return FORWARD_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"PROBE_FORWARD_PIXELS={text!r}: expected a positive integer (pixels per forward pass)")
    return int(text)


def images_per_forward(batch_size: int, hw: tuple[int, int], minimum: int = 1) -> tuple[int, str | None]:
    """(images per forward pass, the reason text or None when ``batch_size`` is kept) for images of ``hw``
    = (H, W) pixels: ``min(batch_size, max(minimum, bound // (H·W)))``."""
    bound = forward_pixels()
    pixels = int(hw[0]) * int(hw[1])
    allowed = max(int(minimum), bound // max(1, pixels))
    if batch_size <= allowed:
        return int(batch_size), None
    return allowed, (f"batch_size {batch_size} lowered to {allowed} images of {hw[0]}x{hw[1]} per forward pass "
                     f"(bound {bound} pixels, PROBE_FORWARD_PIXELS)")


def attribution_batches(internal_batch_size: int | None, rows: int, hw: tuple[int, int]
                        ) -> tuple[int | None, int, str | None]:
    """(rows per attribution forward — ``internal_batch_size`` kept, None kept as None, or lowered to the bound —,
    images per faithfulness forward, the reason text or None) for ``rows`` path rows of ``hw`` images."""
    cap, why = images_per_forward(internal_batch_size if internal_batch_size is not None else rows, hw)
    ibs = internal_batch_size if why is None else cap
    return ibs, images_per_forward(ibs or 64, hw)[0], why


def bound_attrs(images: str, batch_why: str | None) -> dict[str, str]:
    """The entry attrs of an attribution result: ``images`` (which were used) and, where the bound lowered the
    rows per forward, ``batch_bound`` (why)."""
    out = {"images": images}
    if batch_why:
        out["batch_bound"] = batch_why.replace("batch_size", "internal_batch_size (rows)")
    return out


def image_choice(n_used: int, n_total: int, param: str, value: Any) -> str:
    """The sentence saying which images a probe used: ``"first 4 of 10 images per split (n_images=4)"``."""
    if n_used >= n_total:
        return f"all {n_total} images per split ({param}={value})"
    return f"first {n_used} of {n_total} images per split ({param}={value}; natural order of the eval set)"


def plan_lines(probes: Mapping[str, Any], n_images: int, hw: tuple[int, int]) -> list[str]:
    """Load-summary lines for ``probes`` (``{name: probe instance}``) on an evaluation set of ``n_images``
    images per split (smallest split) of ``hw`` pixels: which images each expensive probe uses, and the
    forward-pass bound where it lowers a batch."""
    lines = []
    for name, probe in probes.items():
        params = getattr(probe, "params", {}) or {}
        key = IMAGE_PARAMS.get(name)
        if key is not None and key in params:
            value = params[key]
            used = n_images if value is None else min(int(value), n_images)
            lines.append(f"{name}: {image_choice(used, n_images, key, value)}")
        per_forward = context_size(hw, params["context"]) if "context" in params else hw  # cem: its crops
        for batch_key in ("batch_size", "internal_batch_size"):
            if isinstance(params.get(batch_key), int) and not isinstance(params[batch_key], bool):
                _, why = images_per_forward(params[batch_key], per_forward, 4 if name == "cka" else 1)
                if why and name == "cka" and params.get("convention") == "image":
                    why += "; the HSIC minibatch: a minibatch estimate"
                if why:
                    lines.append(f"{name}: {why.replace('batch_size', batch_key, 1)}")
        if "context" in params:
            why = context_text(hw, context_size(hw, params["context"]), params["context"])
            if why:
                lines.append(f"{name}: maps on a {why}")
    return lines


def context_size(hw: tuple[int, int], context: int | None) -> tuple[int, int]:
    """(h, w) of the crop an intervention map is computed on: ``min(context, H)`` × ``min(context, W)``;
    the whole image for ``context=None``."""
    if context is None:
        return int(hw[0]), int(hw[1])
    return min(int(context), int(hw[0])), min(int(context), int(hw[1]))


def context_text(hw: tuple[int, int], crop: tuple[int, int], context: int | None) -> str | None:
    """The sentence stored when maps are computed on crops (None when images are whole)."""
    if tuple(crop) == tuple(hw):
        return None
    return (f"{crop[0]}x{crop[1]} crop centred on the ROI of each {hw[0]}x{hw[1]} image (context={context}): "
            f"the network sees the crop; effects farther than its edge are not measured; context=None for "
            "whole images")


def crop_around(batch: Any, window: Any, crop: tuple[int, int]) -> tuple[Any, Any, Any]:
    """(``batch`` cut to ``crop`` = (h, w) around each example's window, the window in crop coordinates,
    ``(N, 4)`` int array of the crops' [top, left, height, width] in the image). Each crop is centred on its
    window and shifted inside the image. Every 4-D tensor field of the batch (degraded, clean, layer, masks) is
    cut; the batch is returned unchanged when the crop is the whole image."""
    import dataclasses

    import numpy as np
    import torch

    from probe.methods.windows import Window

    ch, cw = int(crop[0]), int(crop[1])
    h, w = batch.degraded.shape[-2:]
    n = len(window)
    if (ch, cw) == (h, w):
        return batch, window, np.stack([np.zeros(n), np.zeros(n), np.full(n, h), np.full(n, w)], 1).astype(np.int32)
    tops = (window.top + window.height // 2 - ch // 2).clamp(0, h - ch)
    lefts = (window.left + window.width // 2 - cw // 2).clamp(0, w - cw)

    def cut(t: Any) -> Any:
        if not (isinstance(t, torch.Tensor) and t.dim() == 4 and tuple(t.shape[-2:]) == (h, w)):
            return t
        return torch.stack([t[i, :, int(tops[i]):int(tops[i]) + ch, int(lefts[i]):int(lefts[i]) + cw]
                            for i in range(n)]).contiguous()

    fields = {f.name: cut(getattr(batch, f.name)) for f in dataclasses.fields(batch)}
    boxes = np.stack([tops.numpy(), lefts.numpy(), np.full(n, ch), np.full(n, cw)], 1).astype(np.int32)
    return (dataclasses.replace(batch, **fields),
            Window(window.top - tops, window.left - lefts, window.height, window.width), boxes)
