"""The ``cem`` probe: causal effect maps — which input *content* does the restoration of a region depend on?

Interventional attribution after Hu, Gu, … Dong (arXiv 2407.19789), engine :mod:`probe.methods.causal_effect`:
for a region of interest (ROI, ``roi`` px, placed like the attribution probe's windows: ``on`` the rain /
``off`` it, ``border_margin`` from the border), every ``block`` × ``block`` block of the clean background is
replaced by natural content from other images (the data's ``alt_clean`` backgrounds, else the other
evaluation images, else — one image — the image itself flipped; the choice is stored in ``attrs``
``patch_source``), the degradation is re-added (``clip(B' + D, 0, 1)``: only content is intervened on), and
the ROI's PSNR against the clean image is compared with the original's: coarse ``coarse`` draws per block,
``fine`` more where some coarse draw moved it by ≥ ``tol`` dB. The rain is intervened on separately
(do(rain block := 0)).

    from probe.probes import PROBES
    result = PROBES.get("cem")(n_images=2, block=8).run(model, data)
    result.arrays["cem"].sel(split="ood", window="on")          # (image, by, bx) dB
    result.metrics                                               # tidy rows, see below

Images larger than ``context`` px (default 128; None: whole images) are mapped on a ``context``² crop centred
on the ROI (:func:`probe.probes.bounds.crop_around`: the cost grows as (H·W)², ≈ 90× less for 481 × 321; the
network sees the crop, so effects beyond it are not measured — the ``context`` attr says so and
``context_box`` (split, window, image, box) says where each crop lies; maps and ``window_box`` are in crop
coordinates).

Arrays (``attrs``: ``block``, ``grid``, ``coarse``, ``fine``, ``tol_db``, ``composition``, ``patch_source``):
``cem`` (split, window, image, by, bx) dB (|effect| < tol → 0); ``cem_sd`` the draws' standard deviation;
``cem_draws`` interventions per block; ``cem_background`` / ``cem_rain`` (removal dependence per block);
``roi_block`` (blocks overlapping the ROI, excluded from the indicators, as in the paper); ``window_box``
(split, window, image, box); ``faithfulness`` (split, window, image, curve, fraction) deletion/insertion
curves of |CEM| (:mod:`probe.methods.faithfulness`, objective ``removed`` in the ROI); ``image_metrics``.

Metric rows (mean over images per split and window, with ``ci_low`` / ``ci_high``: 95% bootstrap over images;
columns ``window``, ``method`` = "cem"): ``roi_psnr`` (dB), ``effect_range`` (max − min CEM outside the ROI, dB),
``positive_fraction`` / ``negative_fraction`` / ``zero_fraction`` (of the blocks outside the ROI: content
there helps / hurts / does not matter), ``effect_reach`` (px from the ROI to the farthest block with an
effect — *how far*), ``background_dependence`` / ``rain_dependence`` (Σ over blocks of the ROI removal's
change per unit of degradation when the block's content / rain is intervened on — *how much*), ``rain_share``
(rain / (background + rain); NaN with a flag for a network that removes nothing), ``interventions`` (forward
rows per image), ``deletion_gain`` / ``insertion_gain`` (faithfulness of |CEM|; flagged when no better than
random). Identity network: no effect anywhere; oracle: no effect outside the ROI, ``rain_dependence`` 1,
``background_dependence`` 0 where nothing clips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from probe.errors import ConfigError, DataError
from probe.methods.faithfulness import PARAMS as FAITHFULNESS_PARAMS
from probe.methods.faithfulness import check_params as check_faithfulness
from probe.models.anchors import feed
from probe.probes.base import EvalData, Probe, ProbeResult
from probe.probes.bounds import context_size, context_text, crop_around, image_choice, images_per_forward

IMAGE_METRICS = ("roi_psnr", "effect_range", "positive_fraction", "negative_fraction", "zero_fraction",
                 "effect_reach", "background_dependence", "rain_dependence", "rain_share", "interventions",
                 "deletion_gain", "insertion_gain")
REMOVES_NOTHING = "removes nothing: no intervention changes what the network removes"


class CEM(Probe):
    """Causal effect maps and removal dependence on background vs rain (see module doc)."""

    name = "cem"
    description = "causal effect maps (interventions on background blocks, rain re-added), removal dependence"
    defaults: dict[str, Any] = {
        "roi": 16,
        "windows": ["on"],
        "border_margin": "auto",
        "block": 8,
        "coarse": 3,
        "fine": 16,
        "tol": 0.01,
        "internal_batch_size": 64,
        "n_images": 2,
        "context": 128,
        **FAITHFULNESS_PARAMS,
        "splits": None,
        "seed": 0,
    }

    def validate(self) -> None:
        from probe.methods.windows import check_margin, check_windows
        from probe.probes._validate import int_param, names_param, number_param

        p = self.params
        for key, low in (("roi", 1), ("block", 1), ("coarse", 1), ("fine", 0), ("internal_batch_size", 1),
                         ("n_images", 1)):
            int_param("cem", key, p[key], low)
        if p["context"] is not None:
            int_param("cem", "context", p["context"], 1)
        number_param("cem", "tol", p["tol"], minimum=0)
        p["windows"] = check_windows("cem", p["windows"])
        check_margin("cem", p["border_margin"])
        check_faithfulness("cem", p)
        p["splits"] = names_param("cem", "splits", p["splits"])
        int_param("cem", "seed", p["seed"], -(2 ** 63))

    # ------------------------------------------------------------------------------------------- run
    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:
        import xarray as xr

        from probe.methods.causal_effect import PatchSampler, block_grid, causal_effect_maps
        from probe.methods.threads import contention_aware_threads
        from probe.methods.windows import default_windows
        from probe.progress import progress

        p = self.params
        data = data.select(p["splits"])
        if not data.splits:
            raise DataError("cem: the evaluation data has no splits")
        feed(model, data)
        splits = list(data.splits)
        n = min(p["n_images"], *(len(b) for b in data.splits.values()))
        self._n_total = min(len(b) for b in data.splits.values())
        first = data.splits[splits[0]]
        if first.degraded.dim() != 4:
            raise DataError(f"cem: images must be (N,C,H,W), got {tuple(first.degraded.shape)}")
        full = tuple(int(v) for v in first.degraded.shape[-2:])
        h, w = context_size(full, p["context"])
        self._context_why = context_text(full, (h, w), p["context"])
        self._ibs, self._batch_why = images_per_forward(p["internal_batch_size"], (int(h), int(w)))
        if p["roi"] > min(h, w) or p["block"] > min(h, w):
            raise ConfigError(f"cem: 'roi' ({p['roi']}) and 'block' ({p['block']}) must fit the {h}x{w} "
                              f"{'context crops' if self._context_why else 'images'}")
        grid = block_grid((h, w), p["block"])
        names = p["windows"]
        s_, w_ = len(splits), len(names)
        shape = (s_, w_, n, *grid)
        cem, sd, draws, bgd, rnd = (np.zeros(shape, np.float32) for _ in range(5))
        roi_blocks = np.zeros(shape, bool)
        boxes, contexts = np.zeros((s_, w_, n, 4), np.int32), np.zeros((s_, w_, n, 4), np.int32)
        values = np.full((s_, w_, n, len(IMAGE_METRICS)), np.nan)
        points = p["faithfulness_points"]
        curves = np.full((s_, w_, n, 4, points + 1), np.nan, np.float32)
        fractions = np.linspace(0, 1, points + 1) ** 2  # as probe.methods.faithfulness
        put = {m: k for k, m in enumerate(IMAGE_METRICS)}
        info: dict[str, Any] = {}
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        try:
            with contention_aware_threads(device):
                for si, wi in progress([(a, b) for a in range(s_) for b in range(w_)], desc="cem"):
                    batch = data.splits[splits[si]][:n]
                    if tuple(batch.degraded.shape[-2:]) != full:
                        raise DataError(f"cem: split {splits[si]!r} has images of size "
                                        f"{tuple(batch.degraded.shape[-2:])}, expected {full}")
                    sources, source_name = self._sources(data, batch)  # content drawn from whole images
                    window = default_windows(batch.mask, p["roi"], p["border_margin"])[names[wi]]
                    batch, window, contexts[si, wi] = crop_around(batch, window, (h, w))
                    box = torch.as_tensor(window.boxes()).long()
                    boxes[si, wi] = box.numpy()
                    res = causal_effect_maps(
                        model, batch.clean, batch.layer, box, block=p["block"],
                        sampler=PatchSampler(sources, seed=p["seed"]), coarse=p["coarse"], fine=p["fine"],
                        tol=float(p["tol"]), internal_batch_size=self._ibs,
                        feed=lambda x, b: feed(model, x.to(device), b.to(device)))
                    info = {**res.info, "patch_source": source_name}
                    cem[si, wi], sd[si, wi] = res.effect.numpy(), res.effect_sd.numpy()
                    draws[si, wi], bgd[si, wi], rnd[si, wi] = (res.draws.numpy(), res.background.numpy(),
                                                               res.rain.numpy())
                    roi_blocks[si, wi] = res.roi_block.numpy()
                    self._indicators(values[si, wi], put, res, box)
                    if p["faithfulness"]:
                        self._faithfulness(model, batch, window, res, curves[si, wi], values[si, wi], put,
                                           device)
        finally:
            model.train(was_training)
        return self._result(xr, splits, names, n, cem, sd, draws, bgd, rnd, roi_blocks, boxes, values, curves,
                            fractions, info, contexts)

    # ------------------------------------------------------------------------------------- internals
    @staticmethod
    def _sources(data: EvalData, batch) -> tuple[torch.Tensor, str]:
        if data.alt_clean is not None and tuple(data.alt_clean.shape[1:]) == tuple(batch.clean.shape[1:]):
            return data.alt_clean, "alt_clean (the evaluation set's other backgrounds)"
        if len(batch) > 1:
            return batch.clean.roll(1, dims=0), "the other evaluation images' backgrounds"
        return batch.clean.flip(-1).flip(-2), "the image's own background, rotated 180 degrees (one image)"

    def _indicators(self, row: np.ndarray, put: dict[str, int], res, box: torch.Tensor) -> None:
        block, tol = self.params["block"], float(self.params["tol"])
        gy, gx = res.effect.shape[1:]
        ys = torch.arange(gy).view(-1, 1) * block
        xs = torch.arange(gx).view(1, -1) * block
        for i in range(res.effect.shape[0]):
            t, l, rh, rw = (int(v) for v in box[i])
            outside = ~res.roi_block[i]
            e = res.effect[i][outside]
            row[i, put["roi_psnr"]] = float(res.psnr_origin[i])
            row[i, put["interventions"]] = res.interventions / res.effect.shape[0]
            if e.numel():
                row[i, put["effect_range"]] = float(e.max() - e.min())
                row[i, put["positive_fraction"]] = float((e > 0).double().mean())
                row[i, put["negative_fraction"]] = float((e < 0).double().mean())
                row[i, put["zero_fraction"]] = float((e == 0).double().mean())
                gap_y = torch.clamp(torch.maximum(t - (ys + block), ys - (t + rh)), min=0)
                gap_x = torch.clamp(torch.maximum(l - (xs + block), xs - (l + rw)), min=0)
                gap = torch.maximum(gap_y.expand(gy, gx), gap_x.expand(gy, gx))
                hit = (res.effect_raw[i].abs() >= max(tol, 1e-12)) & outside
                row[i, put["effect_reach"]] = float(gap[hit].max() + 1) if bool(hit.any()) else 0.0
            bg, rn = float(res.background[i].sum()), float(res.rain[i].sum())
            row[i, put["background_dependence"]] = bg
            row[i, put["rain_dependence"]] = rn
            row[i, put["rain_share"]] = rn / (bg + rn) if bg + rn > 0 else np.nan

    def _faithfulness(self, model, batch, window, res, curves, row, put, device) -> None:
        """Deletion / insertion curves of |CEM| (upsampled to pixels) for ``removed`` in the ROI."""
        from probe.methods.faithfulness import objective_curves
        from probe.methods.objectives import make_context, make_objective

        p = self.params
        objective = make_objective("removed")
        h, w = batch.degraded.shape[-2:]
        block = p["block"]
        maps = res.effect_raw.abs().float().repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]
        faith = objective_curves(model, objective, batch.degraded.to(device),
                                 make_context(objective, window, (h, w), device=device), maps,
                                 points=p["faithfulness_points"], random_orders=p["faithfulness_random"],
                                 seed=p["seed"], batch_size=self._ibs)
        curves[:] = faith.curves
        row[:, put["deletion_gain"]] = faith.deletion_gain
        row[:, put["insertion_gain"]] = faith.insertion_gain

    def _result(self, xr, splits, names, n, cem, sd, draws, bgd, rnd, roi_blocks, boxes, values, curves,
                fractions, info, contexts) -> ProbeResult:
        from probe.methods.faithfulness import FaithfulnessCurves, summarise_gain

        p = self.params
        attrs = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in info.items()}
        attrs["images"] = image_choice(n, self._n_total, "n_images", p["n_images"])
        if self._batch_why:
            attrs["batch_bound"] = self._batch_why.replace("batch_size", "internal_batch_size")
        if self._context_why:
            attrs["context"] = self._context_why
        img = np.arange(n)
        grid_dims = ("split", "window", "image", "by", "bx")
        coords = {"split": splits, "window": names, "image": img}

        def grid_array(values_):
            return xr.DataArray(values_, dims=grid_dims, coords=coords, attrs=dict(attrs))

        arrays = {
            "cem": grid_array(cem), "cem_sd": grid_array(sd), "cem_draws": grid_array(draws),
            "cem_background": grid_array(bgd), "cem_rain": grid_array(rnd),
            "roi_block": grid_array(roi_blocks.astype(np.uint8)),
            "window_box": xr.DataArray(boxes, dims=("split", "window", "image", "box"),
                                       coords={**coords, "box": ["top", "left", "height", "width"]},
                                       attrs=dict(attrs)),
            "context_box": xr.DataArray(contexts, dims=("split", "window", "image", "box"),
                                        coords={**coords, "box": ["top", "left", "height", "width"]},
                                        attrs={**attrs, "description": "where each map's crop lies in the image"}),
            "image_metrics": xr.DataArray(values, dims=("split", "window", "image", "metric"),
                                          coords={**coords, "metric": list(IMAGE_METRICS)}, attrs=dict(attrs)),
        }
        if p["faithfulness"]:
            arrays["faithfulness"] = xr.DataArray(
                curves, dims=("split", "window", "image", "curve", "fraction"),
                coords={**coords, "curve": list(FaithfulnessCurves.CURVES), "fraction": fractions},
                attrs={**attrs, "objective": "removed", "baseline": "blur (sigma 1.2, kernel 9)"})
        result = ProbeResult(arrays=arrays)
        for si, split in enumerate(splits):
            for wi, wname in enumerate(names):
                for k, metric in enumerate(IMAGE_METRICS):
                    col = values[si, wi, :, k]
                    extra = {"window": wname, "method": "cem"}
                    if metric in ("deletion_gain", "insertion_gain"):
                        if not p["faithfulness"]:
                            continue
                        mean, low, high, flag = summarise_gain(col, seed=p["seed"])
                        result.add_metric(split, metric, mean, flag=flag, ci_low=low, ci_high=high, **extra)
                        continue
                    if metric == "rain_share" and np.all(np.isnan(col)):
                        result.add_metric(split, metric, None, flag=REMOVES_NOTHING, **extra)
                        continue
                    finite = col[np.isfinite(col)]
                    if finite.size == 0:
                        result.add_metric(split, metric, None, flag="undefined for these images", **extra)
                        continue
                    low, high = _ci(finite, p["seed"])
                    result.add_metric(split, metric, float(finite.mean()), ci_low=low, ci_high=high, **extra)
        return result


def _ci(values: np.ndarray, seed: int) -> tuple[float, float]:
    from probe.stats import mean_ci

    est = mean_ci(values, seed=seed)
    return float(est.ci_low), float(est.ci_high)
