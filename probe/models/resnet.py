"""``resnet``: an SRResNet/EDSR-style residual network at scale 1, as used in paper A.

head conv → N residual blocks (conv–ReLU–conv, residual scaling) → body conv + long skip → tail conv to
3 channels. With ``global_residual=True`` (default) the tail predicts the degradation *layer* and the output
is ``input − layer``; with ``False`` the tail predicts the image directly (paper A trains both)::

    from probe.models import build
    model = build("resnet", size="tiny", global_residual=False)
    y = model(torch.rand(1, 3, 37, 53))                 # same shape out
    model.probe_points()[:3]   # ['hook_head', 'blocks.0.hook_out', 'blocks.1.hook_out']

Probe points, in forward order: ``hook_head`` (head conv), ``blocks.{i}.hook_out`` (after each residual
block, i.e. after its skip add), ``hook_body`` (after body conv + long skip), ``hook_layer`` (tail conv
output: the predicted layer, or the predicted image when ``global_residual=False``), ``hook_output``
(the model's output, i.e. after the global residual subtraction). No op after a HookPoint is in place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from probe.models.base import HookPoint, RestorationModel
from probe.models.layers import boolean, check_input, check_options, positive_float, positive_int


class ResidualBlock(nn.Module):
    """conv3×3 → ReLU → conv3×3, scaled by ``res_scale`` and added to the input (no batch norm)."""

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale
        self.hook_out = HookPoint()
        for conv in (self.conv1, self.conv2):  # BasicSR default_init_weights(scale=0.1): stable deep stacks
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        res = self.conv2(self.act(self.conv1(x)))
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return self.hook_out(x + res)


class ResNet(RestorationModel):
    """SRResNet-style restoration network at scale 1.

    Options (every size preset sets all of them; keyword arguments override):
    ``n_blocks`` (residual blocks), ``channels`` (feature width), ``res_scale`` (residual scaling inside each
    block, EDSR uses 0.1 for wide nets), ``global_residual`` (True: output = input − predicted layer).
    Presets: tiny 4 × 16, small 8 × 32, paper 16 × 64 (paper A).
    """

    family: ClassVar[str] = "resnet"
    channels_last: ClassVar[bool] = True
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"n_blocks": 4, "channels": 16, "res_scale": 1.0, "global_residual": True},
        "small": {"n_blocks": 8, "channels": 32, "res_scale": 1.0, "global_residual": True},
        "paper": {"n_blocks": 16, "channels": 64, "res_scale": 1.0, "global_residual": True},
    }

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__(size, **kwargs)
        hp = self.hparams
        check_options(self.family, hp, self.sizes["tiny"])
        n_blocks = positive_int(self.family, "n_blocks", hp["n_blocks"])
        channels = positive_int(self.family, "channels", hp["channels"])
        res_scale = positive_float(self.family, "res_scale", hp["res_scale"])
        self.global_residual = boolean(self.family, "global_residual", hp["global_residual"])
        self.pad_multiple = 1

        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.hook_head = HookPoint()
        self.blocks = nn.Sequential(*[ResidualBlock(channels, res_scale) for _ in range(n_blocks)])
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.hook_body = HookPoint()
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        self.hook_layer = HookPoint()
        self.hook_output = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        check_input(self.family, x)
        feat = self.hook_head(self.head(x))
        body = self.hook_body(self.conv_body(self.blocks(feat)) + feat)
        layer = self.hook_layer(self.tail(body))
        return self.hook_output(x - layer if self.global_residual else layer)
