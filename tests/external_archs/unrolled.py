"""RCDNet style: unrolled step sizes made with ``nn.Parameter(w.expand(...))`` (tensors whose elements share
memory; ``load_state_dict`` cannot copy into them), one expanded buffer and one tied parameter."""

import torch
from torch import nn


class Unrolled(nn.Module):
    """x − Σ_s eta_s · conv_s(x): three step sizes expanded from one scalar each, as RCDNet's ``eta11`` …."""

    def __init__(self, stages=3, width=3):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, width, 3, padding=1) for _ in range(stages))
        eta = torch.Tensor([0.1])
        for s in range(stages):  # the official code: self.eta11 = nn.Parameter(eta.expand(stages, -1, -1, -1))
            setattr(self, f"eta{s}", nn.Parameter(eta.expand(width, 1, 1)))
        self.frozen = nn.Parameter(torch.ones(1).expand(width, 1, 1), requires_grad=False)
        self.register_buffer("scale", torch.ones(1).expand(width, 1, 1))
        self.tied = self.convs[0]  # the same module twice: its tensors are tied, not copies

    def forward(self, x):
        out = x
        for s, conv in enumerate(self.convs):
            out = out - getattr(self, f"eta{s}") * self.frozen * self.scale * conv(x)
        return out
