"""``swinir``: SwinIR-light style restoration transformer (Liang et al. 2021) at scale 1.

shallow conv → residual Swin transformer groups (RSTB: Swin blocks with window self-attention, every
second block with windows shifted by half a window, relative position bias; a conv3×3 and a skip per
group) → LayerNorm → conv + long skip → reconstruction conv to 3 channels → global residual
(output = input − predicted layer). The input is reflect-padded (bottom/right) to a multiple of
``window_size`` and the result cropped back; the shifted-window attention mask is built for the padded
size and cached per (size, device, dtype)::

    from probe.models import build
    model = build("swinir", size="tiny")                 # depths [2, 2], embed 24, 2 heads, window 8
    y = model(torch.rand(1, 3, 37, 53))                  # (1, 3, 37, 53)

Differences from the official SwinIR: no drop-path (stochastic depth) or dropout, no mean shift /
``img_range`` (the global residual makes it moot), output = input − layer rather than + layer (the probe
convention; ``hook_layer`` is the estimated degradation in every family). Key names differ from official
checkpoints on purpose (``head``/``tail``), so those do not load silently with the wrong sign.

Probe points, in forward order (all NCHW feature maps at the padded size): ``hook_head`` (shallow conv),
``layers.{i}.blocks.{j}.hook_out`` (after Swin block ``j`` of group ``i``), ``layers.{i}.hook_out``
(after the group's conv + skip), ``hook_body`` (after norm, conv and long skip), ``hook_layer``
(reconstruction conv, cropped), ``hook_output``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import checkpoint as activation_checkpoint

from probe.errors import ConfigError
from probe.models.base import HookPoint, RestorationModel
from probe.models.layers import (
    boolean,
    check_input,
    check_options,
    crop,
    int_list,
    pad_to_multiple,
    positive_float,
    positive_int,
)

_MASK_CACHE_SIZE = 8


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) → (B, nW, ws·ws, C); H and W must be multiples of ``ws``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """(B, nW, ws·ws, C) → (B, H, W, C), the inverse of :func:`window_partition`."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device: Any = None) -> Tensor:
    """Additive attention mask (nW, ws·ws, ws·ws) for windows shifted by ``shift`` on an H×W map.

    0 where two tokens of a (cyclically shifted) window came from the same region of the unshifted map,
    −100 where the roll brought them together from opposite borders (as in Swin/SwinIR).

    >>> shifted_window_mask(16, 16, 8, 4).shape
    torch.Size([4, 64, 64])
    """
    region = torch.zeros(1, h, w, 1, device=device)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for wsl in cuts:
            region[:, hs, wsl, :] = label
            label += 1
    ids = window_partition(region, ws)[0, :, :, 0]  # (nW, N)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def attention_reference(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """softmax(q·kᵀ/√d + bias)·v written out (Swin, Liu et al. 2021, eq. 4): the unfused reference the
    fused :class:`WindowAttention` is tested against. Shapes broadcast: q, k, v ``(..., N, d)``."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias
    return scores.softmax(-1) @ v


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws×ws windows with a learned relative position bias.

    Runs on one fused ``scaled_dot_product_attention`` call in a 4-D layout ``(B, nW·heads, N, d)`` whose
    additive mask (relative-position bias + shift mask, ``(1, nW·heads, N, N)``) broadcasts over the batch,
    so CUDA's memory-efficient kernel takes it without materialising per-image masks. Where the head
    dimension is not a multiple of 8 (SwinIR-light: 60 / 6 = 10) q, k, v are zero-padded to the next
    multiple on CUDA (``pad_head_dim="auto"``; ``True``/``False`` force it) with the softmax scale kept at
    1/√d — zeros change neither q·kᵀ nor the kept output columns."""

    pad_head_dim: bool | str = "auto"

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        ws = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (N, N, 2)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1],
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B, nW, N, C) window tokens; mask: (nW, N, N) additive or None."""
        b, nw, n, c = x.shape
        heads = self.num_heads
        d = c // heads
        qkv = self.qkv(x).reshape(b, nw, n, 3, heads, d).permute(3, 0, 1, 4, 2, 5)
        q, k, v = (t.reshape(b, nw * heads, n, d) for t in qkv.unbind(0))  # (B, nW·heads, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, heads).permute(2, 0, 1).unsqueeze(0)  # (1, heads, N, N)
        if mask is not None:
            bias = bias + mask.unsqueeze(1).to(bias.dtype)  # (nW, heads, N, N)
        bias = bias.expand(nw, heads, n, n).reshape(1, nw * heads, n, n).to(q.dtype)
        pad = self._padding(d, q)
        if pad:
            q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=d ** -0.5)
        if pad:
            out = out[..., :d]
        out = out.reshape(b, nw, heads, n, d).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)

    def _padding(self, d: int, q: Tensor) -> int:
        want = self.pad_head_dim
        if want == "auto":
            want = q.is_cuda
        return (-d) % 8 if want else 0


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose output keeps the input's dtype. Under bf16/fp16 autocast PyTorch computes
    layer norm in float32 and returns float32, which turned the whole residual stream into float32 with a
    cast before every linear layer; here the statistics stay float32 and the activations stay in half
    precision. Identical in float32."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).to(x.dtype)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin transformer block on an NCHW map whose H, W are multiples of the window size."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.hook_out = HookPoint()

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        _, _, h, w = x.shape
        ws, s = self.window_size, self.shift
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        y = self.norm1(t)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, ws), mask if s else None), ws, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        t = t + y
        t = t + self.mlp(self.norm2(t))
        return self.hook_out(t.permute(0, 3, 1, 2))


class RSTB(nn.Module):
    """Residual Swin transformer block: ``depth`` Swin blocks, conv3×3, skip from the group input."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 checkpoint: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if j % 2 == 0 else window_size // 2, mlp_ratio)
            for j in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.hook_out = HookPoint()
        self.checkpoint = checkpoint

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        y = x
        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            y = activation_checkpoint.checkpoint(block, y, mask, use_reentrant=False) if recompute \
                else block(y, mask)
        return self.hook_out(self.conv(y) + x)


class SwinIR(RestorationModel):
    """SwinIR-light style network for scale-1 restoration.

    Options: ``depths`` (Swin blocks per residual group), ``embed_dim``, ``num_heads`` (int, or one per
    group), ``window_size`` (≥ 2), ``mlp_ratio``, ``global_residual`` (default True), ``grad_checkpoint``
    (default False: recompute each Swin block in the backward pass, ``torch.utils.checkpoint``, trading
    about a third more step time for activation memory; training only, no effect on the weights).
    Presets: tiny depths [2, 2] / embed 24 / 2 heads; small [4, 4] / 48 / 4; paper [6, 6, 6, 6] / 60 / 6
    (SwinIR-light, paper A); window 8 and mlp ratio 2 throughout.
    """

    family: ClassVar[str] = "swinir"
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"depths": [2, 2], "embed_dim": 24, "num_heads": 2, "window_size": 8, "mlp_ratio": 2.0,
                 "global_residual": True, "grad_checkpoint": False},
        "small": {"depths": [4, 4], "embed_dim": 48, "num_heads": 4, "window_size": 8, "mlp_ratio": 2.0,
                  "global_residual": True, "grad_checkpoint": False},
        "paper": {"depths": [6, 6, 6, 6], "embed_dim": 60, "num_heads": 6, "window_size": 8,
                  "mlp_ratio": 2.0, "global_residual": True, "grad_checkpoint": False},
    }

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__(size, **kwargs)
        hp = self.hparams
        fam = self.family
        check_options(fam, hp, self.sizes["tiny"])
        depths = int_list(fam, "depths", hp["depths"])
        dim = positive_int(fam, "embed_dim", hp["embed_dim"])
        heads = hp["num_heads"]
        heads = int_list(fam, "num_heads", heads, length=len(depths)) if isinstance(heads, (list, tuple)) \
            else [positive_int(fam, "num_heads", heads)] * len(depths)
        for h in heads:
            if dim % h:
                raise ConfigError(f"{fam}: 'embed_dim' ({dim}) must be divisible by 'num_heads' ({h})")
        ws = positive_int(fam, "window_size", hp["window_size"])
        if ws < 2:
            raise ConfigError(f"{fam}: 'window_size' must be >= 2, got {ws}")
        mlp_ratio = positive_float(fam, "mlp_ratio", hp["mlp_ratio"])
        self.global_residual = boolean(fam, "global_residual", hp["global_residual"])
        self.window_size = ws
        self.pad_multiple = ws
        self._masks: dict[tuple[Any, ...], Tensor] = {}

        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.hook_head = HookPoint()
        self.patch_norm = LayerNorm(dim)
        checkpoint = boolean(fam, "grad_checkpoint", hp["grad_checkpoint"])
        self.layers = nn.ModuleList(RSTB(dim, d, h, ws, mlp_ratio, checkpoint) for d, h in zip(depths, heads))
        self.norm = LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.hook_body = HookPoint()
        self.tail = nn.Conv2d(dim, 3, 3, padding=1)
        self.hook_layer = HookPoint()
        self.hook_output = HookPoint()
        self.apply(_init_weights)

    def attention_mask(self, h: int, w: int, device: Any, dtype: torch.dtype) -> Tensor:
        """The shifted-window mask for a padded h×w map (cached; a few sizes at a time)."""
        key = (h, w, str(device), dtype)
        mask = self._masks.get(key)
        if mask is None:
            mask = shifted_window_mask(h, w, self.window_size, self.window_size // 2, device).to(dtype)
            if len(self._masks) >= _MASK_CACHE_SIZE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = mask
        return mask

    def forward(self, x: Tensor) -> Tensor:
        check_input(self.family, x)
        h, w = x.shape[-2:]
        y = pad_to_multiple(x, self.window_size)
        mask = self.attention_mask(y.shape[-2], y.shape[-1], y.device, y.dtype)
        feat = self.hook_head(self.head(y))
        body = self.patch_norm(feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        for layer in self.layers:
            body = layer(body, mask)
        body = self.norm(body.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        body = self.hook_body(self.conv_after_body(body) + feat)
        layer = self.hook_layer(crop(self.tail(body), h, w))
        return self.hook_output(x - layer if self.global_residual else layer)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
