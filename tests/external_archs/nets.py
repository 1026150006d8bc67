"""Tiny stand-ins for published restoration architectures, one per pattern probe must handle.

None of them subclasses anything of probe's; each follows the convention of a family of published code.
"""

import torch
import torch.nn.functional as F
from blocks import ConvAct  # sibling import: works because the file's folder is on sys.path while imported
from torch import nn


class MultiStage(nn.Module):
    """MPRNet/HINet style: forward returns a list of stage outputs, the final restoration first."""

    def __init__(self, width=8, stages=2):
        super().__init__()
        self.head = ConvAct(3, width)
        self.stages = nn.ModuleList(ConvAct(width, width) for _ in range(stages))
        self.tails = nn.ModuleList(nn.Conv2d(width, 3, 3, padding=1) for _ in range(stages))

    def forward(self, x):
        feat = self.head(x)
        outs = []
        for stage, tail in zip(self.stages, self.tails):
            feat = stage(feat)
            outs.append(x + tail(feat))
        return outs[::-1]


class TupleLast(nn.Module):
    """Returns a tuple (aux feature map, restored image): the image is not first but is the first image-shaped."""

    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Sequential(ConvAct(3, width), ConvAct(width, width))
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        feat = self.body(x)
        return feat, x + self.tail(feat)


class DictOut(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.body = ConvAct(3, width)
        self.tail = nn.Conv2d(width, 3, 1)

    def forward(self, x):
        return {"rain": self.tail(self.body(x)), "derained": x - self.tail(self.body(x))}


class Needs8(nn.Module):
    """A U-Net with three 2× downsamplings: H and W must be divisible by 8 (Restormer/NAFNet-style)."""

    def __init__(self, width=8):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = ConvAct(3, width), ConvAct(width, width), ConvAct(width, width)
        self.mid = ConvAct(width, width)
        self.dec3, self.dec2, self.dec1 = ConvAct(width, width), ConvAct(width, width), ConvAct(width, width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise RuntimeError(f"Sizes of tensors must match except in dimension 1. Expected size {x.shape[-1] // 8}")
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        e3 = self.enc3(F.avg_pool2d(e2, 2))
        m = self.mid(F.avg_pool2d(e3, 2))
        d3 = self.dec3(F.interpolate(m, scale_factor=2.0) + e3)
        d2 = self.dec2(F.interpolate(d3, scale_factor=2.0) + e2)
        d1 = self.dec1(F.interpolate(d2, scale_factor=2.0) + e1)
        return x + self.out(d1)


class KwargsOnly(nn.Module):
    """SwinIR/Uformer style: keyword-only constructor without defaults for the essentials."""

    def __init__(self, *, embed_dim, depth, img_range=1.0):
        super().__init__()
        self.img_range = img_range
        self.conv_first = nn.Conv2d(3, embed_dim, 3, padding=1)
        self.layers = nn.Sequential(*[ConvAct(embed_dim, embed_dim) for _ in range(depth)])
        self.conv_last = nn.Conv2d(embed_dim, 3, 3, padding=1)

    def forward(self, x):
        return x + self.conv_last(self.layers(self.conv_first(x)))


class PredictsLayer(nn.Module):
    """DDN/JORDER style: predicts the rain layer, not the clean image."""

    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Sequential(ConvAct(3, width), nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x):
        return self.body(x)


class Range255(nn.Module):
    """Expects and returns images in 0..255 (some older code bases)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        assert x.max() > 2, "expects 0..255 input"
        return x * self.scale


class WithBN(nn.Module):
    """Has BatchNorm running statistics (persistent buffers) beside its parameters."""

    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Conv2d(width, 3, 1)

    def forward(self, x):
        return x + self.head(self.bn(self.conv(x)))
