"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP 2017), as a user architecture file.

The model families study (``analyses/model_families.toml``) trains it beside probe's own families through
``"model.arch" = "archs/dncnn_arch.py:DnCNN"`` — the way a researcher brings their own network into a study
(docs/your-own-network.md, "In a study"). Nothing in this file imports probe.

Residual learning (the paper's Eq. 1): the body ``R`` estimates the degradation layer and the network returns
``y - R(y)``. ``R`` is ``depth`` 3×3 convolutions: conv + ReLU, ``depth - 2`` × (conv + BatchNorm + ReLU), conv.
The paper's denoiser has ``depth = 17`` and ``width = 64`` (about 0.56 M parameters); the defaults here are
the size of probe's ``tiny`` networks (about 22 k parameters) so that a CPU study runs in minutes.

Shapes: ``forward`` takes and returns ``(N, 3, H, W)``, any ``H`` and ``W`` (padding 1 keeps the size).

>>> net = DnCNN(depth=6, width=24)
>>> net(torch.rand(2, 3, 48, 48)).shape
torch.Size([2, 3, 48, 48])
"""

from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    """``depth`` conv layers of ``width`` channels predicting the degradation layer; returns ``y - R(y)``."""

    def __init__(self, depth: int = 6, width: int = 24, channels: int = 3) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth={depth}: DnCNN needs at least 2 layers (first and last)")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y - self.body(y)
