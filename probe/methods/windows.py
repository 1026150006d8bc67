"""Attribution windows: where on the output an objective looks (LAM's window, Gu & Dong 2021).

A :class:`Window` holds one rectangle per example (top-left corners and a shared size) and renders it as the
``(N, 1, H, W)`` masks that objectives take as context (:func:`probe.methods.objectives.make_context`).
:func:`default_windows` places one window where the rain mask is densest (``"on"``) and one where it is
sparsest (``"off"``), both ``border_margin`` pixels inside the image (:func:`border_margin`: by default
``max(size // 2, min(H, W) // 8)``, clipped so a position exists) — because zero padding dominates what a
network does at the border. :func:`full_window` covers whole images::

    import torch
    from probe.methods.windows import default_windows
    mask = torch.zeros(1, 1, 32, 32); mask[..., 4:12, 20:24] = 1
    default_windows(mask, size=8)["on"].boxes()        # [[top, left, height, width]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from probe.errors import ConfigError, DataError

__all__ = ["Window", "border_margin", "check_margin", "check_windows", "default_windows", "full_window"]


def check_windows(owner: str, value: object) -> list[str]:
    """A probe's ``windows`` parameter: a non-empty list of distinct ``"on"`` / ``"off"`` (ConfigError naming
    ``owner`` otherwise)."""
    if (not isinstance(value, (list, tuple)) or not value
            or any(w not in ("on", "off") for w in value) or len(set(value)) != len(value)):
        raise ConfigError(f"{owner}: 'windows' must be a non-empty list of 'on'/'off', got {value!r}")
    return list(value)


def check_margin(owner: str, value: object) -> int | str:
    """A probe's ``border_margin`` parameter: ``"auto"`` or an integer ≥ 0."""
    if value != "auto" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"{owner}: 'border_margin' must be 'auto' or an integer >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Window:
    """Rectangular windows, one per example: top-left corners ``top``/``left`` (``(N,)`` long), one shared
    ``height`` × ``width`` (``Window.square`` for the usual square LAM window)."""

    top: Tensor
    left: Tensor
    height: int
    width: int

    def __len__(self) -> int:
        return int(self.top.shape[0])

    @property
    def size(self) -> int:
        return max(self.height, self.width)

    def mask(self, shape: tuple[int, int], device: torch.device | str | None = None) -> Tensor:
        """0/1 mask ``(N, 1, H, W)`` of the windows."""
        h, w = shape
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        top = self.top.to(device).view(-1, 1, 1)
        left = self.left.to(device).view(-1, 1, 1)
        inside = (ys >= top) & (ys < top + self.height) & (xs >= left) & (xs < left + self.width)
        return inside.unsqueeze(1).float()

    def centre_mask(self, shape: tuple[int, int], device: torch.device | str | None = None) -> Tensor:
        """One-hot ``(N, 1, H, W)`` at each window's centre ``(top + height // 2, left + width // 2)``."""
        h, w = shape
        out = torch.zeros(len(self), 1, h, w, device=device)
        cy = (self.top + self.height // 2).clamp(max=h - 1)
        cx = (self.left + self.width // 2).clamp(max=w - 1)
        out[torch.arange(len(self)), 0, cy, cx] = 1.0
        return out

    def boxes(self) -> np.ndarray:
        """``(N, 4)`` int array of ``[top, left, height, width]`` (for overlays)."""
        n = len(self)
        return np.stack([self.top.cpu().numpy(), self.left.cpu().numpy(),
                         np.full(n, self.height), np.full(n, self.width)], axis=1).astype(np.int32)

    @staticmethod
    def square(top: int | list[int], left: int | list[int], size: int, n: int | None = None) -> Window:
        """Square windows at given corners (scalars are broadcast to ``n`` examples)."""
        top_t = torch.as_tensor(top, dtype=torch.long).reshape(-1)
        left_t = torch.as_tensor(left, dtype=torch.long).reshape(-1)
        if n is not None:
            top_t = top_t.expand(n).clone() if top_t.numel() == 1 else top_t
            left_t = left_t.expand(n).clone() if left_t.numel() == 1 else left_t
        if top_t.shape != left_t.shape:
            raise ConfigError(f"window: top has {top_t.numel()} values but left has {left_t.numel()}")
        if int(size) < 1:
            raise ConfigError(f"window size must be >= 1, got {size}")
        return Window(top_t, left_t, int(size), int(size))


def border_margin(size: int, shape: tuple[int, int], margin: int | str = "auto") -> int:
    """Pixels a ``size`` × ``size`` window keeps from every image border (the window-placement rule).

    ``"auto"``: ``max(size // 2, min(H, W) // 8)`` — zero padding reaches about one receptive field into
    the image and dominates gradients there, so windows stay at least half a window and an eighth of the
    image away from the border. An integer is used as given. Either is clipped to ``(min(H, W) − size) // 2``
    so that at least one position remains.

    >>> border_margin(16, (48, 48)), border_margin(16, (128, 128)), border_margin(40, (48, 48))
    (8, 16, 4)
    """
    h, w = shape
    m = max(int(size) // 2, min(h, w) // 8) if margin == "auto" else int(margin)
    return max(0, min(m, (min(h, w) - int(size)) // 2))


def default_windows(mask: Tensor, size: int, margin: int | str = "auto") -> dict[str, Window]:
    """Pick, per image, one ``size``×``size`` window ON rain (max mask density) and one OFF (min density).

    ``mask`` is ``(N, 1, H, W)`` (or ``(N, H, W)``), binary or soft. Density is the window mean of the mask
    over every position that keeps :func:`border_margin` pixels (``margin``, default ``"auto"``) from each
    image border. Ties (e.g. many rain-free positions) are broken deterministically by the
    distance of the window centre to the image centre, then by raster order — so the result depends on the
    mask alone (a rain-free image gets the central window for both). Returns ``{"on": Window, "off": Window}``.

    >>> m = torch.zeros(1, 1, 32, 32); m[0, 0, 2:10, 2:10] = 1
    >>> w = default_windows(m, 8, margin=0); (int(w["on"].top), int(w["on"].left))
    (2, 2)
    >>> w = default_windows(m, 8); (int(w["on"].top), int(w["on"].left))  # 4 px from the border
    (4, 4)
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4:
        raise DataError(f"default_windows: mask must be (N,1,H,W), got shape {tuple(mask.shape)}")
    n, _, h, w = mask.shape
    size = int(size)
    if size < 1 or size > min(h, w):
        raise ConfigError(f"window size {size} does not fit images of {h}x{w}")
    m = border_margin(size, (h, w), margin)
    density = F.avg_pool2d(mask.float().sum(1, keepdim=True).cpu().double(), size, stride=1)[:, 0]
    density = density[:, m:density.shape[-2] - m, m:density.shape[-1] - m]
    ph, pw = density.shape[-2:]
    ys = torch.arange(ph, dtype=torch.float64).view(ph, 1) + m + (size - 1) / 2.0
    xs = torch.arange(pw, dtype=torch.float64).view(1, pw) + m + (size - 1) / 2.0
    dist = ((ys - (h - 1) / 2.0) ** 2 + (xs - (w - 1) / 2.0) ** 2).reshape(-1)
    order_key = dist / (dist.max() + 1.0)  # in [0, 1): only breaks ties
    result: dict[str, Window] = {}
    for name, sign in (("on", -1.0), ("off", 1.0)):
        tops, lefts = [], []
        for i in range(n):
            d = density[i].reshape(-1)
            best = d.max() if sign < 0 else d.min()
            tie = (d - best).abs() <= 1e-9
            score = torch.where(tie, order_key, torch.full_like(order_key, 2.0))
            idx = int(torch.argmin(score))  # first minimum → raster order among equal distances
            tops.append(idx // pw + m)
            lefts.append(idx % pw + m)
        result[name] = Window.square(tops, lefts, size)
    return result


def full_window(n: int, shape: tuple[int, int]) -> Window:
    """A window covering the whole image (for objectives that do not use a window)."""
    zeros = torch.zeros(n, dtype=torch.long)
    return Window(zeros, zeros.clone(), int(shape[0]), int(shape[1]))
