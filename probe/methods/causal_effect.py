"""Causal effect maps (CEM): interventional attribution for restoration networks, batched and forward-only.

Source: Hu, Gu, …, Dong, *Interpreting Low-level Vision Models with Causal Effect Maps*, arXiv 2407.19789
(public code by the first author; read to understand the procedure, re-implemented here). For a region of
interest (ROI) of the output and a grid of ``block`` × ``block`` input blocks:

1. **do(background block := other natural content).** The block of the clean background ``B`` is replaced by
   a ``block``-sized patch of another natural image (:class:`PatchSampler`: deterministic per (image, block,
   draw)), and the degradation is re-added, ``x' = clip(B' + D, 0, 1)`` — so only content is intervened on
   (exact for additive degradations: rain, noise; for blur ``D = O − B`` of the original image is an
   approximation). The network restores ``x'``.
2. **Effect on fidelity** (the paper's map): ``CEM[j] = PSNR_ROI(f(x), B) − mean_k PSNR_ROI(f(x'_jk), B)`` in dB
   (PSNR capped at 100 dB as in :func:`probe.metrics.psnr`). Positive: the block's content *helps* restore the
   ROI (replacing it lowers fidelity); negative: it *hurts*. ``|CEM| < tol`` is set to 0 (paper: 0.01 dB).
3. **Coarse-to-fine**: ``coarse`` draws per block; blocks where some coarse draw moved the ROI PSNR by ≥
   ``tol`` get ``fine`` new draws whose mean replaces the coarse mean (the paper's schedule: 3 and 50).
4. **Removal dependence** (ours, the deraining question "does the removal follow the content or the rain?"):
   with ``R̂ = x − f(x)`` the removed part, ``background[j] = mean_k ‖R̂'_ROI − R̂_ROI‖₁ / ‖(x − B)_ROI‖₁``
   for the background interventions above, and ``rain[j]`` the same for do(rain block := 0) (one
   deterministic intervention: ``x' = clip(B + D·(1 − 1_j), 0, 1)``). An oracle (``f(x) = B``) has
   ``Σ_j rain[j] = 1`` and ``background ≡ 0`` where nothing clips; an identity network removes nothing and has
   0 everywhere.

Every intervened copy is one row of a batched forward, at most ``internal_batch_size`` rows at a time
(no gradients). ::

    import torch
    from torch import nn
    from probe.methods.causal_effect import PatchSampler, causal_effect_maps
    net = nn.Conv2d(3, 3, 3, padding=1)
    clean = torch.rand(1, 3, 32, 32); layer = 0.2 * (torch.rand(1, 3, 32, 32) > 0.9)
    res = causal_effect_maps(net, clean, layer, roi=(12, 12, 8, 8), block=8,
                             sampler=PatchSampler(torch.rand(2, 3, 32, 32), seed=0))
    res.effect.shape, res.rain.shape        # (1, 4, 4) dB, (1, 4, 4)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from probe.errors import ConfigError, DataError
from probe.methods.threads import contention_aware_threads

__all__ = ["CausalEffect", "PatchSampler", "block_grid", "causal_effect_maps", "roi_psnr"]

PSNR_CAP = 100.0  # dB, as probe.metrics.psnr


def roi_psnr(output: Tensor, clean: Tensor, roi: tuple[int, int, int, int]) -> Tensor:
    """PSNR in dB (data range 1, capped at 100) of ``output`` vs ``clean`` inside ``roi`` = (top, left, h, w);
    ``output`` (M, C, H, W), ``clean`` (C, H, W) or (M, C, H, W) → (M,) float64."""
    t, l, h, w = roi
    o = output[..., t:t + h, l:l + w].clamp(0, 1).double()
    c = clean[..., t:t + h, l:l + w].double()
    mse = (o - c).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp(max=PSNR_CAP)


def block_grid(hw: tuple[int, int], block: int) -> tuple[int, int]:
    """Number of block rows and columns covering an ``hw`` image (the last ones may be partial)."""
    return math.ceil(hw[0] / block), math.ceil(hw[1] / block)


class PatchSampler:
    """Deterministic natural-content patches: patch ``(image, block, draw)`` is a ``size``² crop of one of
    ``sources`` (K, C, H, W), image and position drawn from a generator seeded by (seed, image, block, draw)
    — so any implementation that asks for the same triple gets the same patch."""

    def __init__(self, sources: Tensor, seed: int = 0):
        if sources.dim() != 4 or sources.shape[0] < 1:
            raise DataError(f"CEM: patch sources must be (K, C, H, W) with K >= 1, got {tuple(sources.shape)}")
        self.sources = sources.detach().float().cpu()  # interventions are composed on the host
        self.seed = int(seed)

    def generator(self, image: int, block: int, draw: int) -> torch.Generator:
        key = hashlib.sha256(f"{self.seed}:{image}:{block}:{draw}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2 ** 63 - 1))

    def patch(self, image: int, block: int, draw: int, size: tuple[int, int]) -> Tensor:
        """(C, h, w) patch for the intervention ``draw`` on ``block`` of ``image``."""
        k, _, sh, sw = self.sources.shape
        ph, pw = size
        if ph > sh or pw > sw:
            raise DataError(f"CEM: block {ph}x{pw} larger than the patch sources {sh}x{sw}")
        g = self.generator(image, block, draw)
        src = int(torch.randint(k, (1,), generator=g))
        y = int(torch.randint(sh - ph + 1, (1,), generator=g))
        x = int(torch.randint(sw - pw + 1, (1,), generator=g))
        return self.sources[src, :, y:y + ph, x:x + pw]


@dataclass
class CausalEffect:
    """Result of :func:`causal_effect_maps` for N images on a (Gy, Gx) block grid.

    ``effect`` (N, Gy, Gx) dB: the CEM (tol-zeroed); ``effect_raw`` the same before zeroing; ``draws``
    (N, Gy, Gx): background interventions behind each entry (coarse, or fine where refined); ``effect_sd``
    (N, Gy, Gx): their standard deviation (dB); ``background`` / ``rain`` (N, Gy, Gx): removal dependence;
    ``roi_block`` (Gy, Gx) bool per image (N, Gy, Gx): blocks overlapping the ROI; ``psnr_origin`` (N,);
    ``interventions``: forwards rows run in all; ``info``: JSON description."""

    effect: Tensor
    effect_raw: Tensor
    effect_sd: Tensor
    draws: Tensor
    background: Tensor
    rain: Tensor
    roi_block: Tensor
    psnr_origin: Tensor
    interventions: int
    info: dict[str, Any] = field(default_factory=dict)


def _block_box(j: int, grid: tuple[int, int], block: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    gy, gx = divmod(j, grid[1])
    t, l = gy * block, gx * block
    return t, l, min(block, hw[0] - t), min(block, hw[1] - l)


def _run_rows(model: Callable[[Tensor], Tensor], rows: list[Tensor], chunk: int, device) -> Tensor:
    outs = []
    with torch.no_grad():
        for s in range(0, len(rows), chunk):
            outs.append(model(torch.stack(rows[s:s + chunk]).to(device)).float())
    return torch.cat(outs)


class _ImageRun:
    """The interventions on one image: its original output and the two kinds of intervened batches."""

    def __init__(self, forward, sampler, b: Tensor, d: Tensor, index: int, box: tuple[int, int, int, int],
                 grid: tuple[int, int], block: int, chunk: int = 64):
        self.forward, self.sampler, self.b, self.d, self.index, self.box = forward, sampler, b, d, index, box
        self.chunk = max(1, int(chunk))  # rows built and run at a time: memory bounded by one chunk
        self.grid, self.block, self.hw = grid, block, (int(b.shape[-2]), int(b.shape[-1]))
        t, l, rh, rw = box
        x = (b + d).clamp(0, 1)
        y = forward([x], [b])[0]
        self.psnr0 = float(roi_psnr(y[None], b, box)[0])
        self.removed0 = (x - y)[:, t:t + rh, l:l + rw]
        self.scale = float((x - b)[:, t:t + rh, l:l + rw].abs().sum())

    def removal_change(self, outs: Tensor, inputs: list[Tensor]) -> Tensor:
        """‖R̂'_ROI − R̂_ROI‖₁ / ‖(x − B)_ROI‖₁ per row (NaN where the ROI holds no degradation)."""
        t, l, rh, rw = self.box
        xs = torch.stack(inputs)[..., t:t + rh, l:l + rw]
        change = ((xs - outs[..., t:t + rh, l:l + rw]) - self.removed0).abs().flatten(1).sum(1).double()
        return change / self.scale if self.scale > 0 else torch.full_like(change, float("nan"))

    def background_rows(self, jobs: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """ROI PSNR and removal change for do(block j := patch draw k), ``jobs`` = [(j, k), ...]; the
        intervened images are built ``chunk`` at a time (full-size images: thousands of rows)."""
        psnr, change = [], []
        for start in range(0, len(jobs), self.chunk):
            inputs, bgs = [], []
            for j, k in jobs[start:start + self.chunk]:
                bt, bl, bh, bw = _block_box(j, self.grid, self.block, self.hw)
                b2 = self.b.clone()
                b2[:, bt:bt + bh, bl:bl + bw] = self.sampler.patch(self.index, j, k, (bh, bw))
                inputs.append((b2 + self.d).clamp(0, 1))
                bgs.append(b2)
            outs = self.forward(inputs, bgs)
            psnr.append(roi_psnr(outs, self.b, self.box))
            change.append(self.removal_change(outs, inputs))
        return torch.cat(psnr), torch.cat(change)

    def rain_rows(self, nb: int) -> Tensor:
        """Removal change for do(rain in block j := 0), every block j."""
        change = []
        for start in range(0, nb, self.chunk):
            inputs = []
            for j in range(start, min(nb, start + self.chunk)):
                bt, bl, bh, bw = _block_box(j, self.grid, self.block, self.hw)
                d2 = self.d.clone()
                d2[:, bt:bt + bh, bl:bl + bw] = 0
                inputs.append((self.b + d2).clamp(0, 1))
            outs = self.forward(inputs, [self.b] * len(inputs))
            change.append(self.removal_change(outs, inputs))
        return torch.cat(change)


def causal_effect_maps(
    model: nn.Module,
    clean: Tensor,
    layer: Tensor,
    roi: tuple[int, int, int, int] | Tensor,
    *,
    block: int = 8,
    sampler: PatchSampler,
    coarse: int = 3,
    fine: int = 16,
    tol: float = 0.01,
    internal_batch_size: int = 64,
    feed: Callable[[Tensor, Tensor], None] | None = None,
) -> CausalEffect:
    """CEM and removal dependence of ``model`` for images ``clean`` (N, C, H, W) with degradation ``layer``
    (same shape; the input is ``clip(clean + layer, 0, 1)``), see the module doc.

    ``roi``: (top, left, height, width) shared by all images, or an (N, 4) tensor of them. ``feed(x, B)``:
    called with every batch of intervened inputs and their backgrounds before the forward (an oracle anchor
    needs them, :func:`probe.models.anchors.feed`). Raises ConfigError for bad sizes/counts, DataError for
    mismatched shapes."""
    if clean.dim() != 4 or clean.shape != layer.shape:
        raise DataError(f"CEM: clean {tuple(clean.shape)} and layer {tuple(layer.shape)} must be one "
                        "(N, C, H, W) shape")
    for name, value, low in (("block", block, 1), ("coarse", coarse, 1), ("fine", fine, 0),
                             ("internal_batch_size", internal_batch_size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"CEM: {name!r} must be an integer >= {low}, got {value!r}")
    n, _, h, w = clean.shape
    rois = roi.tolist() if isinstance(roi, Tensor) else [list(roi)] * n
    if len(rois) != n or any(r[2] < 1 or r[3] < 1 or r[0] < 0 or r[1] < 0 or r[0] + r[2] > h or r[1] + r[3] > w
                             for r in rois):
        raise ConfigError(f"CEM: roi {rois[:1]} must lie inside the {h}x{w} image (one per image)")
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = clean.device
    with contention_aware_threads(device):  # see probe.methods.threads: no more threads than free cores
        return _maps(model, clean, layer, rois, block, sampler, coarse, fine, tol, internal_batch_size, feed,
                     device)


def _maps(model, clean, layer, rois, block, sampler, coarse, fine, tol, internal_batch_size, feed,
          device) -> CausalEffect:
    n, _, h, w = clean.shape
    grid = block_grid((h, w), block)
    nb = grid[0] * grid[1]
    clean_c, layer_c = clean.detach().float().cpu(), layer.detach().float().cpu()
    shape = (n, *grid)
    effect_raw = torch.zeros(shape, dtype=torch.float64)
    effect_sd = torch.zeros(shape, dtype=torch.float64)
    draws = torch.zeros(shape, dtype=torch.int64)
    background = torch.zeros(shape, dtype=torch.float64)
    rain = torch.zeros(shape, dtype=torch.float64)
    roi_block = torch.zeros(shape, dtype=torch.bool)
    psnr0 = torch.zeros(n, dtype=torch.float64)
    total_rows = 0

    def forward(inputs: list[Tensor], backgrounds: list[Tensor]) -> Tensor:
        if feed is not None:
            feed(torch.stack(inputs), torch.stack(backgrounds))
        return _run_rows(model, inputs, internal_batch_size, device).cpu()

    for i in range(n):
        one = _ImageRun(forward, sampler, clean_c[i], layer_c[i], i, tuple(int(v) for v in rois[i]), grid, block,
                        internal_batch_size)
        psnr0[i] = one.psnr0
        for j in range(nb):
            bt, bl, bh, bw = _block_box(j, grid, block, (h, w))
            t, l, rh, rw = one.box
            roi_block[i].view(-1)[j] = bt < t + rh and t < bt + bh and bl < l + rw and l < bl + bw
        # coarse pass: `coarse` draws per block, all blocks in batched rows
        fid, rem = one.background_rows([(j, k) for j in range(nb) for k in range(coarse)])
        total_rows += nb * coarse + 1
        fid, rem = fid.view(nb, coarse), rem.view(nb, coarse)
        per_block = [(fid[j], rem[j]) for j in range(nb)]
        refine = [j for j in range(nb) if fine > 0 and bool(((one.psnr0 - fid[j]).abs() >= tol).any())]
        if refine:  # fine pass: new draws replace the coarse estimate where the coarse effect matters
            ffid, frem = one.background_rows([(j, coarse + k) for j in refine for k in range(fine)])
            total_rows += len(refine) * fine
            ffid, frem = ffid.view(len(refine), fine), frem.view(len(refine), fine)
            for r, j in enumerate(refine):
                per_block[j] = (ffid[r], frem[r])
        for j, (f_j, r_j) in enumerate(per_block):
            effect_raw[i].view(-1)[j] = one.psnr0 - f_j.mean()
            effect_sd[i].view(-1)[j] = f_j.std(unbiased=True) if f_j.numel() > 1 else 0.0
            draws[i].view(-1)[j] = f_j.numel()
            background[i].view(-1)[j] = r_j.mean()
        rain[i] = one.rain_rows(nb).view(grid)  # do(rain block := 0), one intervention per block
        total_rows += nb
    effect = torch.where(effect_raw.abs() < tol, torch.zeros_like(effect_raw), effect_raw)
    info = {"method": "causal_effect_map", "block": int(block), "grid": list(grid), "coarse": int(coarse),
            "fine": int(fine), "tol_db": float(tol), "internal_batch_size": int(internal_batch_size),
            "composition": "clip(B' + D, 0, 1)", "rain_intervention": "do(D_block := 0)",
            "psnr_cap_db": PSNR_CAP, "source": "Hu et al., arXiv 2407.19789"}
    return CausalEffect(effect, effect_raw, effect_sd, draws, background, rain, roi_block, psnr0, total_rows, info)
