"""``unet``: a standard U-Net encoder–decoder with skip connections (no batch norm).

``depth`` down-samplings (max-pool 2×2); level ``i`` has ``base_channels · 2**i`` channels, each level is
two conv3×3–ReLU; the decoder up-samples with a 2×2 transposed conv, concatenates the skip and applies two
conv3×3–ReLU; a 1×1 conv maps to 3 channels. The input is reflect-padded (bottom/right) to a multiple of
``2**depth`` and the result cropped back, so any H×W works::

    from probe.models import build
    model = build("unet", size="tiny")                   # depth 2, 16 base channels
    y = model(torch.rand(2, 3, 37, 53))                  # (2, 3, 37, 53)

``global_residual`` defaults to **True** (output = input − predicted layer), the same convention as
``resnet`` and ``swinir`` so that the flag and ``hook_layer`` mean the same thing in every family; set it
to False for a plain image-to-image U-Net.

Probe points, in forward order: ``encoders.{i}.hook_out`` (level ``i`` features = the skip, at the padded
size / 2**i), ``middle.hook_out`` (bottleneck), ``decoders.{j}.hook_out`` (``j = 0`` is the deepest
decoder level), ``hook_layer`` (1×1 conv output cropped to the input size), ``hook_output``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.models.base import HookPoint, RestorationModel
from probe.models.layers import boolean, check_input, check_options, crop, pad_to_multiple, positive_int


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class EncoderLevel(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = _double_conv(cin, cout)
        self.hook_out = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_out(self.body(x))


class DecoderLevel(nn.Module):
    """Up-sample ``cin`` → ``cout`` channels, concatenate the skip (``cout``), two convs to ``cout``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.body = _double_conv(2 * cout, cout)
        self.hook_out = HookPoint()

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.hook_out(self.body(torch.cat([self.up(x), skip], dim=1)))


class UNet(RestorationModel):
    """U-Net for image restoration.

    Options: ``depth`` (number of down-samplings), ``base_channels`` (channels of level 0, doubled per
    level), ``global_residual`` (default True: output = input − predicted layer).
    Presets: tiny depth 2 × 16, small depth 3 × 32, paper depth 4 × 64 (the classic 31 M-parameter U-Net).
    """

    family: ClassVar[str] = "unet"
    channels_last: ClassVar[bool] = True
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"depth": 2, "base_channels": 16, "global_residual": True},
        "small": {"depth": 3, "base_channels": 32, "global_residual": True},
        "paper": {"depth": 4, "base_channels": 64, "global_residual": True},
    }

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__(size, **kwargs)
        hp = self.hparams
        check_options(self.family, hp, self.sizes["tiny"])
        depth = positive_int(self.family, "depth", hp["depth"])
        base = positive_int(self.family, "base_channels", hp["base_channels"])
        self.global_residual = boolean(self.family, "global_residual", hp["global_residual"])
        self.pad_multiple = 2 ** depth

        chans = [base * 2 ** i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(EncoderLevel(3 if i == 0 else chans[i - 1], chans[i])
                                      for i in range(depth))
        self.middle = EncoderLevel(chans[depth - 1], chans[depth])
        self.decoders = nn.ModuleList(DecoderLevel(chans[i + 1], chans[i]) for i in reversed(range(depth)))
        self.tail = nn.Conv2d(base, 3, 1)
        self.hook_layer = HookPoint()
        self.hook_output = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        check_input(self.family, x)
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, self.pad_multiple)
        skips = []
        for encoder in self.encoders:
            y = encoder(y)
            skips.append(y)
            y = F.max_pool2d(y, 2)
        y = self.middle(y)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            y = decoder(y, skip)
        layer = self.hook_layer(crop(self.tail(y), h, w))
        return self.hook_output(x - layer if self.global_residual else layer)
