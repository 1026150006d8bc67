"""Tiny networks, one per pattern of published code that probe must load as written and measure correctly.

Where a behaviour must be known, the restoring output is a 3×3 erosion (which removes thin bright streaks) plus a
convolution the tests set to zero; the other outputs carry random convolutions (worse than doing nothing).
"""

import argparse

import torch
import torch.nn.functional as F
from torch import nn


def erode(x):
    """A 3×3 grey erosion: removes thin bright streaks (a known, parameter-free restoration)."""
    return -F.max_pool2d(-x, 3, 1, 1)


class TensorCtor(nn.Module):
    """SwinIR/Uformer style: the constructor computes with tensors (``.item()`` on a linspace of rates)."""

    def __init__(self, width=8, depth=3, drop_path_rate=0.1):
        super().__init__()
        rates = [r.item() for r in torch.linspace(0, drop_path_rate, depth)]
        self.rates = rates
        self.register_buffer("scale", torch.ones(1) * (1 + rates[-1] * 0))
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[nn.Conv2d(width, width, 3, padding=1) for _ in rates])
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x + self.tail(self.body(self.head(x))) * self.scale


class DefaultModule(nn.Module):
    """DGUNet style: a module created in a default argument, at import time."""

    def __init__(self, width=8, act=nn.PReLU()):  # noqa: B008 - the pattern under test
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.act = act
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x + self.tail(self.act(self.head(x)))


class SettingsNet(nn.Module):
    """PReNet-style code bases: the constructor takes the command-line settings object."""

    def __init__(self, opt):
        super().__init__()
        assert isinstance(opt, argparse.Namespace), "expects the argparse settings"
        self.iters = opt.recurrent_iter
        self.conv = nn.Conv2d(6, opt.width, 3, padding=1)
        self.out = nn.Conv2d(opt.width, 3, 3, padding=1)

    def forward(self, x):
        y = x
        for _ in range(self.iters):
            y = x + self.out(torch.relu(self.conv(torch.cat([x, y], 1))))
        return y


class _Plain(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x + self.tail(torch.relu(self.head(x)))


def make_model(width=8):
    """A factory function (``--arch FILE.py:make_model``)."""
    return _Plain(width)


class NestedFinalLast(nn.Module):
    """Returns ``(B0, [stage images], [maps])``: the final image is the last stage, nested (``1.-1``)."""

    def __init__(self, width=8):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.s1 = nn.Conv2d(width, 3, 3, padding=1)
        self.s2 = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.head(x))
        b0 = x * 0.5
        stage1 = x + self.s1(f)
        final = erode(x) + self.s2(f)
        return b0, [stage1, final], [f[:, :1], f[:, 1:2]]


class FirstNotImage(NestedFinalLast):
    """``[stage1, final]``: the first output is an intermediate restoration, the last the restored image."""

    def forward(self, x):
        f = torch.relu(self.head(x))
        return [x + self.s1(f), erode(x) + self.s2(f)]


class Layer(nn.Module):
    """Predicts the rain layer (no global residual); restored = input − output."""

    def __init__(self, width=8):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x - erode(x) + self.tail(torch.relu(self.head(x)))


class InPlace(_Plain):
    """Changes its input in place after computing its output (``x.mul_``)."""

    def __init__(self, width=8):
        super().__init__(width)

    def forward(self, x):
        y = super().forward(x)
        x.mul_(0.5)
        return y


class Noisy(_Plain):
    """Adds random noise in its forward (an unseeded draw): two forwards differ."""

    def __init__(self, width=8):
        super().__init__(width)

    def forward(self, x):
        return super().forward(x) + 0.01 * torch.randn_like(x)


class Only32(_Plain):
    """A fixed-size network (absolute position embedding style): runs at 32×32 only."""

    def __init__(self, width=8):
        super().__init__(width)

    def forward(self, x):
        assert x.shape[-2:] == (32, 32), f"input size {tuple(x.shape[-2:])} != (32, 32)"
        return super().forward(x)


class Raises(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        if width > 4:
            raise ValueError("width must be <= 4 in this build")
        self.conv = nn.Conv2d(3, 3, 1)


class Asserts(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        assert width % 3 == 0, "width must be a multiple of 3"
