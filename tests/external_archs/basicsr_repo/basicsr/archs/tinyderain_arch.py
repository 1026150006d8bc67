"""A BasicSR-style architecture file: relative imports inside the basicsr.archs package."""
import torch
from torch import nn

from .arch_util import conv3


class TinyDerain(nn.Module):
    def __init__(self, inp_channels=3, dim=8, num_blocks=2):
        super().__init__()
        self.head = conv3(inp_channels, dim)
        self.body = nn.Sequential(*[conv3(dim, dim) for _ in range(num_blocks)])
        self.tail = conv3(dim, 3)

    def forward(self, x):
        return x + self.tail(self.body(torch.relu(self.head(x))))
