"""``smooth``: procedural low-complexity backgrounds (a colour gradient plus a few soft Gaussian blobs).

>>> from probe.data.backgrounds.smooth import Smooth
>>> Smooth(patch=32, seed=0, blobs=3).images(2).shape
torch.Size([2, 3, 64, 64])

The picture is drawn in coordinates normalised to the image side, so it looks the same at every size.
Unbounded: every index gets its own random stream, so any number of distinct images can be drawn.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from probe.data.backgrounds.base import BackgroundSource, Option, int_at_least

_CHUNK = 32  # images rendered at once (bounds the (chunk, blobs, 3, S, S) intermediate)


class Smooth(BackgroundSource):
    """Smooth images: base colour + linear colour ramp + ``blobs`` soft Gaussian blobs (sigma 10–35 % of
    the side). The lowest-complexity family (steep spectral slope, tiny gradients)."""

    name = "smooth"
    options = {"blobs": Option(4, int_at_least(0), "an int >= 0 (soft blobs per image)")}

    def _generate(self, n: int, split: str) -> Tensor:
        k = self.params["blobs"]
        rows = []
        for i in range(n):  # a few random numbers per image; the pixels are vectorised below
            rng = self._rng(split, i)
            rows.append(np.concatenate([
                rng.uniform(0.25, 0.75, 3),  # base colour
                rng.uniform(-0.3, 0.3, 3),  # ramp colour change across the image
                [rng.uniform(0.0, 2 * np.pi)],  # ramp direction
                rng.uniform(0.0, 1.0, 2 * k),  # blob centres
                rng.uniform(0.10, 0.35, k),  # blob sigmas (fraction of the side)
                rng.uniform(-0.3, 0.3, 3 * k),  # blob colours
            ]))
        params = torch.from_numpy(np.asarray(rows, dtype=np.float64)).float().reshape(n, -1)
        s = self.size
        t = (torch.arange(s, dtype=torch.float32) + 0.5) / s
        yy, xx = t[:, None], t[None, :]
        out = []
        for p in params.split(_CHUNK):
            m = p.shape[0]
            base, ramp, theta = p[:, 0:3], p[:, 3:6], p[:, 6]
            centres = p[:, 7:7 + 2 * k].reshape(m, k, 2)
            sigmas = p[:, 7 + 2 * k:7 + 3 * k]
            colours = p[:, 7 + 3 * k:].reshape(m, k, 3)
            proj = (torch.cos(theta)[:, None, None] * (xx - 0.5) + torch.sin(theta)[:, None, None] * (yy - 0.5))
            img = base[:, :, None, None] + ramp[:, :, None, None] * proj[:, None]
            if k:
                d2 = ((xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2)
                g = torch.exp(-d2 / (2 * sigmas[..., None, None] ** 2))  # (n, k, S, S)
                img = img + torch.einsum("nkc,nkhw->nchw", colours, g)
            out.append(img.clamp_(0.0, 1.0))
        return torch.cat(out) if out else torch.empty(0, 3, s, s)
