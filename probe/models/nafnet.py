"""``nafnet``: NAFNet (Chen et al. 2022), a nonlinear-activation-free U-shaped network, lite presets.

head conv → encoder levels (NAFBlocks, then a 2×2 stride-2 conv doubling the channels) → middle
NAFBlocks → decoder levels (1×1 conv + PixelShuffle halving the channels, add the skip, NAFBlocks) → tail
conv to 3 channels → global residual (output = input − predicted layer). A NAFBlock is LayerNorm2d →
1×1 conv → depthwise 3×3 → SimpleGate → simplified channel attention → 1×1 conv (×β, skip), then
LayerNorm2d → 1×1 → SimpleGate → 1×1 (×γ, skip); β and γ start at zero as in the paper. The input is
reflect-padded (bottom/right) to a multiple of ``2**levels`` and cropped back::

    from probe.models import build
    model = build("nafnet", size="tiny")                 # width 16, 2 levels
    y = model(torch.rand(1, 3, 37, 53))                  # (1, 3, 37, 53)

Official checkpoints (``intro``/``ending``, output = input + ending) load after renaming ``intro.`` →
``head.``, ``ending.`` → ``tail.`` and negating ``tail.weight`` / ``tail.bias``; the names differ on
purpose so that they never load silently with the wrong sign.

Probe points, in forward order: ``hook_head``, ``encoders.{i}.blocks.{j}.hook_out``,
``middle.{j}.hook_out``, per decoder level ``decoders.{i}.hook_merge`` (up-sampled features + skip, the
functional add) then ``decoders.{i}.blocks.{j}.hook_out`` (``i = 0`` is the deepest level),
``hook_layer`` (tail conv output, cropped), ``hook_output``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.errors import ConfigError
from probe.models.base import HookPoint, RestorationModel
from probe.models.layers import (
    boolean,
    check_input,
    check_options,
    crop,
    int_list,
    pad_to_multiple,
    positive_int,
)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an NCHW map (per pixel), with affine weight and bias.

    y = (x − μ) / √(σ² + ε) · w + b with μ, σ² the per-pixel channel mean and biased variance (NAFNet's
    LayerNorm2d). Computed by the fused ``F.layer_norm`` on a channels-last view: one kernel instead of six
    elementwise passes. Statistics are always computed in float32 and the result is returned in the input's
    dtype, so under bf16/fp16 autocast the activations stay in half precision (no float32 round trip per
    block: that made bf16 training slower than fp32 on an H200); in float32 it equals the written-out
    formula (:func:`layer_norm2d_reference`) to rounding."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.float().permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2).to(x.dtype)


def layer_norm2d_reference(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6) -> Tensor:
    """The written-out channel LayerNorm (the previous implementation), kept as the test reference."""
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.hook_out = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        y = self.sg(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        y = x + y * self.beta.to(y.dtype)  # scales in the activations' dtype: no float32 promotion
        z = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return self.hook_out(y + z * self.gamma.to(z.dtype))


class EncoderLevel(nn.Module):
    def __init__(self, c: int, n_blocks: int):
        super().__init__()
        self.blocks = nn.Sequential(*[NAFBlock(c) for _ in range(n_blocks)])
        self.down = nn.Conv2d(c, 2 * c, 2, stride=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.blocks(x)
        return self.down(skip), skip


class DecoderLevel(nn.Module):
    def __init__(self, c: int, n_blocks: int):
        """``c``: channels coming in (from the deeper level); the level works at ``c // 2``."""
        super().__init__()
        self.up = nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2))
        self.hook_merge = HookPoint()
        self.blocks = nn.Sequential(*[NAFBlock(c // 2) for _ in range(n_blocks)])

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.blocks(self.hook_merge(self.up(x) + skip))


class NAFNet(RestorationModel):
    """NAFNet with lite presets.

    Options: ``width`` (channels of level 0, doubled per level), ``enc_blk_nums`` (NAFBlocks per encoder
    level; its length is the number of levels), ``middle_blk_num``, ``dec_blk_nums`` (per decoder level,
    same length, listed from the deepest level up), ``global_residual`` (default True).
    Presets: tiny width 16 / [1, 1] / 1 / [1, 1]; small 32 / [1, 1, 2] / 2 / [1, 1, 1];
    paper 32 / [2, 2, 4, 8] / 12 / [2, 2, 2, 2] (NAFNet-width32 of the paper).
    """

    family: ClassVar[str] = "nafnet"
    channels_last: ClassVar[bool] = True
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"width": 16, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1],
                 "global_residual": True},
        "small": {"width": 32, "enc_blk_nums": [1, 1, 2], "middle_blk_num": 2, "dec_blk_nums": [1, 1, 1],
                  "global_residual": True},
        "paper": {"width": 32, "enc_blk_nums": [2, 2, 4, 8], "middle_blk_num": 12,
                  "dec_blk_nums": [2, 2, 2, 2], "global_residual": True},
    }

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__(size, **kwargs)
        hp = self.hparams
        fam = self.family
        check_options(fam, hp, self.sizes["tiny"])
        width = positive_int(fam, "width", hp["width"])
        enc = int_list(fam, "enc_blk_nums", hp["enc_blk_nums"], minimum=0)
        dec = int_list(fam, "dec_blk_nums", hp["dec_blk_nums"], minimum=0)
        if len(dec) != len(enc):
            raise ConfigError(f"{fam}: 'dec_blk_nums' needs as many entries as 'enc_blk_nums' "
                              f"({len(enc)}), got {dec!r}")
        middle = hp["middle_blk_num"]
        if isinstance(middle, bool) or not isinstance(middle, int) or middle < 0:
            raise ConfigError(f"{fam}: 'middle_blk_num' must be an integer >= 0, got {middle!r}")
        self.global_residual = boolean(fam, "global_residual", hp["global_residual"])
        self.pad_multiple = 2 ** len(enc)

        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.hook_head = HookPoint()
        chans = [width * 2 ** i for i in range(len(enc) + 1)]
        self.encoders = nn.ModuleList(EncoderLevel(chans[i], n) for i, n in enumerate(enc))
        self.middle = nn.Sequential(*[NAFBlock(chans[-1]) for _ in range(middle)])
        self.decoders = nn.ModuleList(DecoderLevel(chans[len(enc) - i], n) for i, n in enumerate(dec))
        self.tail = nn.Conv2d(width, 3, 3, padding=1)
        self.hook_layer = HookPoint()
        self.hook_output = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        check_input(self.family, x)
        h, w = x.shape[-2:]
        y = self.hook_head(self.head(pad_to_multiple(x, self.pad_multiple)))
        skips = []
        for encoder in self.encoders:
            y, skip = encoder(y)
            skips.append(skip)
        y = self.middle(y)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            y = decoder(y, skip)
        layer = self.hook_layer(crop(self.tail(y), h, w))
        return self.hook_output(x - layer if self.global_residual else layer)
