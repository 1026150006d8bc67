"""Reducers for :mod:`probe.methods.capture`: shrink each captured activation inside its forward hook.

A reducer is any ``f(tensor, ctx: BatchContext) -> Tensor | dict``. The three sample conventions of the
representation probes (``shared/SCIENCE.md``):

* ``pooled`` — :func:`pool`: global average per image and channel, ``(N, C)``;
* ``image`` — :func:`flatten`: one row per image, ``C·H·W`` columns;
* ``pixels`` — :class:`PixelSampler`: fixed, seeded pixel positions per image (normalised to [0, 1) so layers of
  different resolutions see the same places), ``(N·k, C)`` rows; :func:`balanced_pixel_positions` draws
  mask-balanced positions (as many rain as background pixels per image).

Activations are read as NCHW (:func:`to_nchw`: ``(N, C)`` vectors and ``(N, L, C)`` token sequences too)::

    from probe.methods.capture import collect_features
    from probe.methods.reducers import PixelSampler, pool, random_pixel_positions
    pooled = collect_features(model, images, reducer=pool)                      # {layer: (N, C)}
    sampler = PixelSampler(random_pixel_positions(len(images), 64, seed=0))
    pixels = collect_features(model, images, reducer=sampler)                  # {layer: (N·64, C)}
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probe.errors import ConfigError
from probe.methods.capture import BatchContext

__all__ = [
    "PixelSampler",
    "balanced_pixel_positions",
    "flatten",
    "gather_pixels",
    "pool",
    "random_pixel_positions",
    "to_nchw",
]


def to_nchw(tensor: Tensor, input_hw: tuple[int, int] | None = None) -> Tensor:
    """View an activation as ``(N, C, h, w)``: NCHW as is, ``(N, C)`` → ``(N, C, 1, 1)``, tokens ``(N, L, C)`` →
    ``(N, C, h, w)`` with ``h·w = L`` and ``h/w`` closest to the input's aspect ratio."""
    if tensor.dim() == 4:
        return tensor
    if tensor.dim() == 2:
        return tensor[:, :, None, None]
    if tensor.dim() == 3:
        n, length, c = tensor.shape
        ratio = (input_hw[0] / input_hw[1]) if input_hw else 1.0
        h = max(1, round(math.sqrt(length * ratio)))
        while length % h:
            h -= 1
        return tensor.permute(0, 2, 1).reshape(n, c, h, length // h)
    raise ConfigError(f"cannot read an activation of shape {tuple(tensor.shape)} as (N, C, H, W)")


def pool(tensor: Tensor, ctx: BatchContext | None = None) -> Tensor:
    """Reducer: global average per image and channel → ``(N, C)`` float32 (the "pooled" sample convention)."""
    return to_nchw(tensor, ctx.input_hw if ctx else None).float().mean(dim=(2, 3))


def flatten(tensor: Tensor, ctx: BatchContext | None = None) -> Tensor:
    """Reducer: one row per image, ``C·H·W`` columns (the "image" sample convention)."""
    return tensor.reshape(tensor.shape[0], -1)


def random_pixel_positions(n_images: int, per_image: int, seed: int) -> Tensor:
    """``(n_images, per_image, 2)`` uniform (y, x) positions in [0, 1), seeded — the same for every layer."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(n_images, per_image, 2, generator=gen, dtype=torch.float64)


def balanced_pixel_positions(mask: Tensor, per_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Balanced pixel samples from a binary mask ``(N, 1, H, W)``: up to ``per_class`` positive and as many
    negative pixels per image (``m_i = min(per_class, #pos, #neg)``; images with ``m_i = 0`` contribute none).

    Returns ``positions (M, 2)`` in [0, 1) (pixel centres), ``image (M,)`` and ``label (M,)`` (1 = mask)::

        pos, img, lab = balanced_pixel_positions(batch.mask, per_class=64, seed=0)
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ConfigError(f"mask must be (N, 1, H, W), got shape {tuple(mask.shape)}")
    n, _, h, w = mask.shape
    gen = torch.Generator().manual_seed(int(seed))
    flat = (mask.reshape(n, -1) > 0.5).cpu()
    pos_list, img_list, lab_list = [], [], []
    for i in range(n):
        on = torch.nonzero(flat[i]).flatten()
        off = torch.nonzero(~flat[i]).flatten()
        m = min(per_class, on.numel(), off.numel())
        if m == 0:
            continue
        for label, pool_idx in ((1, on), (0, off)):
            chosen = pool_idx[torch.randperm(pool_idx.numel(), generator=gen)[:m]]
            ys, xs = chosen // w, chosen % w
            pos_list.append(torch.stack([(ys + 0.5) / h, (xs + 0.5) / w], 1).double())
            img_list.append(torch.full((m,), i, dtype=torch.long))
            lab_list.append(torch.full((m,), label, dtype=torch.long))
    if not pos_list:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(0, 2, dtype=torch.float64), empty, empty
    return torch.cat(pos_list), torch.cat(img_list), torch.cat(lab_list)


def gather_pixels(tensor: Tensor, image: Tensor, positions: Tensor, input_hw: tuple[int, int] | None = None
                  ) -> Tensor:
    """Features at normalised positions: ``tensor`` ``(b, C, h, w)``, ``image (M,)`` batch-local indices,
    ``positions (M, 2)`` in [0, 1) → ``(M, C)`` float32, nearest cell ``floor(y·h), floor(x·w)`` at the layer's
    own resolution (so layers of different sizes see the same places)."""
    maps = to_nchw(tensor, input_hw)
    h, w = maps.shape[-2:]
    pos = positions.to(maps.device)
    ys = (pos[:, 0] * h).long().clamp_(0, h - 1)
    xs = (pos[:, 1] * w).long().clamp_(0, w - 1)
    return maps[image.to(maps.device), :, ys, xs].float()


class PixelSampler:
    """Reducer gathering fixed pixel samples per image (the "pixels" sample convention).

    ``positions`` is ``(N_total, k, 2)`` in [0, 1) (e.g. :func:`random_pixel_positions`), indexed by the
    batch's global image indices, so a batch of b images gives ``(b·k, C)`` rows ordered image-major::

        sampler = PixelSampler(random_pixel_positions(len(images), 64, seed=0))
        feats = collect_features(model, images, reducer=sampler)     # {layer: (N·64, C)}
    """

    def __init__(self, positions: Tensor):
        if positions.dim() != 3 or positions.shape[-1] != 2:
            raise ConfigError(f"positions must be (N, k, 2), got shape {tuple(positions.shape)}")
        self.positions = positions

    def __call__(self, tensor: Tensor, ctx: BatchContext) -> Tensor:
        idx = ctx.indices.long()
        if int(idx.max()) >= self.positions.shape[0]:
            raise ConfigError(f"PixelSampler has positions for {self.positions.shape[0]} images, "
                              f"got image index {int(idx.max())}")
        pos = self.positions[idx]  # (b, k, 2)
        b, k = pos.shape[:2]
        local = torch.arange(b).repeat_interleave(k)
        return gather_pixels(tensor, local, pos.reshape(b * k, 2), ctx.input_hw)
