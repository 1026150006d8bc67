"""The ``blur`` decomposition: how much of the blur is undone at edges of B vs what happens in flat regions,
and in which frequency band the lost detail is (or is not) restored.

Regions of the clean image B (its luma Y): edges = ``sobel_magnitude(Y) > EDGE_THRESHOLD`` (0.02; the
``skimage.filters.sobel`` scale), flat = the rest (blur changes little there: damage to flat regions is
damage to the content). With E = Ŷ − B and D = O − B (what the blur took away):

* ``blur_removed_image`` = 1 − ‖E‖ / ‖D‖ over the whole image (the study's OOD-removal measure: the
  papers' masked ``removal_ratio`` is undefined where blur changes no pixel by 10/255, e.g. smooth images);
* ``blur_removed_edges`` = 1 − ‖E·edges‖ / ‖D·edges‖: the blur undone at edges (1 = sharp again, 0 =
  untouched, < 0 = blurrier or ringing); ``blur_removed_flat`` likewise in flat regions;
* ``psnr_edges``, ``psnr_flat``, ``psnr_image`` (10 log10 1/MSE in the region / the whole image);
* ``removed_low|mid|high`` = 1 − sqrt(‖Ê‖²/‖D̂‖²) per radial frequency band (cycles/px: [0, 1/8), [1/8,
  1/4), [1/4, ∞)): the fraction of the detail lost in that band that the network restores; ``err_<band>``
  the error energy per band (:func:`~probe.probes.decompositions.common.band_quantities`);
* ``edge_fraction``: share of edge pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probe.probes.decompositions.common import (
    band_quantities,
    luminance,
    psnr_of,
    region_mse,
    region_removal,
    sobel_magnitude,
)

EDGE_THRESHOLD = 0.02
QUANTITIES = ["blur_removed_image", "blur_removed_edges", "blur_removed_flat", "psnr_edges", "psnr_flat",
              "psnr_image", "err_low", "err_mid", "err_high", "removed_low", "removed_mid", "removed_high",
              "edge_fraction"]


def edge_mask(clean: Tensor) -> Tensor:
    """(N, 1, H, W) bool: edge pixels of B (Sobel magnitude of its luma above 0.02)."""
    return sobel_magnitude(luminance(clean)) > EDGE_THRESHOLD


def blur_quantities(output: Tensor, degraded: Tensor, clean: Tensor) -> dict[str, Tensor]:
    """Every quantity of :data:`QUANTITIES`, (N,) float64 each. Inputs (N, 3, H, W) in [0, 1]."""
    out, clean = output.double(), clean.double()
    e, d = out - clean, degraded.double() - clean
    edges = edge_mask(clean)
    flat = ~edges
    q = {"blur_removed_image": region_removal(e, d, torch.ones_like(edges)),
         "blur_removed_edges": region_removal(e, d, edges), "blur_removed_flat": region_removal(e, d, flat),
         "psnr_edges": psnr_of(region_mse(e, edges)), "psnr_flat": psnr_of(region_mse(e, flat)),
         "psnr_image": psnr_of((e**2).mean((1, 2, 3)))}
    q.update(band_quantities(e, d))
    q["edge_fraction"] = edges.double().mean((1, 2, 3))
    return q


blur_quantities.quantities = QUANTITIES  # type: ignore[attr-defined]
