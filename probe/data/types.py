"""The batch type every degradation and paired data set returns: the degraded image *and* its parts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor


@dataclass
class DegradedBatch:
    """A batch of degraded images with their ground-truth layers (all NCHW float32 on one device).

    ``degraded`` = clip(``clean`` + ``layer``, 0, 1) for additive degradations (rain, Gaussian noise);
    for the others ``layer`` = ``degraded`` − ``clean``. ``mask`` is binary (1 where the degradation is),
    ``soft_mask`` in [0, 1] (rain: the normalised rain layer R). ``params`` holds one value per image for
    every sampled parameter (rain: amount, width, length, angle, beta).
    """

    degraded: Tensor  # (N, 3, H, W) the network input O
    clean: Tensor  # (N, 3, H, W) the background B
    layer: Tensor  # (N, 3, H, W) the degradation layer D (rain: beta * R)
    mask: Tensor  # (N, 1, H, W) binary mask of the degradation
    soft_mask: Tensor  # (N, 1, H, W) soft mask in [0, 1]
    params: dict[str, Tensor] = field(default_factory=dict)  # name -> (N,) float

    def __len__(self) -> int:
        return int(self.degraded.shape[0])

    def to(self, device: torch.device | str) -> DegradedBatch:
        return DegradedBatch(**{f.name: _map(getattr(self, f.name), lambda t: t.to(device)) for f in fields(self)})

    def __getitem__(self, index: slice | Tensor | list[int]) -> DegradedBatch:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return DegradedBatch(**{f.name: _map(getattr(self, f.name), lambda t: t[index]) for f in fields(self)})

    @staticmethod
    def cat(batches: list[DegradedBatch]) -> DegradedBatch:
        keys = set().union(*(b.params for b in batches))
        return DegradedBatch(
            degraded=torch.cat([b.degraded for b in batches]),
            clean=torch.cat([b.clean for b in batches]),
            layer=torch.cat([b.layer for b in batches]),
            mask=torch.cat([b.mask for b in batches]),
            soft_mask=torch.cat([b.soft_mask for b in batches]),
            params={k: torch.cat([b.params.get(k, torch.full((len(b),), float("nan"), device=b.degraded.device))
                                  for b in batches])
                    for k in sorted(keys)},
        )


def _map(value, fn):
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    return fn(value)
