"""The ``attribution`` probe: which input pixels does the network use — the rain streaks or the content?

For every split and every window type (``on`` rain streaks / ``off`` them, chosen from the rain mask by
:func:`probe.methods.windows.default_windows` inside the image, ``border_margin`` pixels from its border:
by default ``max(window // 2, min(H, W) // 8)``, see :func:`~probe.methods.windows.border_margin`), the
probe attributes a scalar objective (:mod:`probe.methods.objectives`) to the input pixels of the first
``n_images`` evaluation images. The default objective is what the network *removed*, ``input − output``
(``removed``: its sum in the window; ``lam_removed``: LAM's gradient energy of it, for ``method="lam"``):
a restoration network's output is almost its input, so the attribution of the *output* (``window_sum``,
``lam``) is dominated by the identity path and describes the input — an identity network and a perfect
deraining network get the same maps (issue 12). An identity network removes nothing and gets an all-zero
map, reported as NaN with a flag. Methods:

- ``ig``: Integrated Gradients (our batched engine, linear path from ``baseline``),
- ``lam``: LAM's progressive-blur path (σ from ``sigma`` to 0, ``kernel_size``),
- ``saliency``, ``input_x_gradient``, ``smoothgrad``: captum (gradients of the same objective).

Component attribution: the input is split as ``B`` (the clean background) + ``L`` (= degraded − clean, i.e.
β·R wherever the composite was not clipped, so that B + L is exactly the network input) and both are
attributed through f(B, L) = objective(model(B + L)). The share of attribution mass on L is ``share_on_rain``
(methods ``ig``, ``lam``, ``input_x_gradient``; gradient-only methods have no components). IG-type methods
report the completeness gap. ``baseline = "clean"`` starts the B path at B itself, so A_B = 0 and
``share_on_rain`` = 1 by construction: that row (and ``background_contribution``) is stored as NaN with the
flag ``"fixed by construction: baseline='clean' makes A_B = 0"``.

Every metric row that is NaN carries a ``flag`` column with the reason (``zero attribution map``: the
objective does not change along the path, e.g. nothing removed; ``non-finite``: NaN/inf in the model or
its gradients); ``map_size`` is reported beside ``diffusion_index`` (DI depends on it) together with the
size-corrected ``diffusion_index_corrected`` and the size-invariant ``effective_pixels``.

    from probe.probes import PROBES
    result = PROBES.get("attribution")(method="lam", n_images=2, steps=30).run(model, data)
    result.arrays["attribution"].sel(split="ood", window="on")        # (image, y, x) maps
    result.arrays["image_metrics"].sel(metric="diffusion_index")       # (split, window, image)

Arrays (``xarray.DataArray``; every one carries ``attrs`` ``objective`` (JSON name + params), ``method``,
``path``, ``quadrature``, ``steps``):

- ``attribution`` (split, window, image, y, x): |Σ_c A| of the attribution of the input (LAM's map,
  unnormalised; gradient magnitude for gradient-only methods);
- ``attribution_component`` (split, window, component, image, y, x), component ∈ {background, rain}: the
  same for A_B and A_L (only for methods with components and ``components=True``);
- ``input`` (split, image, channel, y, x): the degraded input images; ``rain_mask`` (split, image, y, x);
- ``window_box`` (split, window, image, box) with box = [top, left, height, width] (pixels);
- ``image_metrics`` (split, window, image, metric): per-image values of the metric rows below.

Metric rows (mean over images per split and window; columns ``window``, ``method``, ``objective``):
``diffusion_index`` (LAM's DI on the whole map), ``map_size`` (its pixel count), ``diffusion_index_corrected``
(finite-size corrected), ``effective_pixels`` (size-invariant spread), ``share_in_mask``, ``mask_fraction``,
``mask_enrichment`` (share_in_mask / mask_fraction), ``share_on_rain``, ``rain_contribution``,
``background_contribution``, ``objective_value`` (objective at the input), ``convergence_delta`` (mean
|Σ A − (F(x) − F(start))|), ``relative_delta`` (max over images of |delta| / |F(x) − F(start)|),
``crop_fraction`` (area integrated on, 1 = full image; see ``crop``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from probe.errors import ConfigError, DataError
from probe.methods.attribution_maps import (
    attribution_map,
    component_shares,
    diffusion_index,
    diffusion_index_corrected,
    effective_pixels,
    region_shares,
)
from probe.methods.captum_methods import captum_attribute
from probe.methods.faithfulness import PARAMS as FAITHFULNESS_PARAMS
from probe.methods.faithfulness import check_params as check_faithfulness
from probe.methods.faithfulness import objective_curves, summarise_gain
from probe.methods.integrated_gradients import ObjectiveForward, PathAttribution, path_integrated_gradients
from probe.methods.objectives import OBJECTIVES, make_context, make_objective
from probe.methods.paths import QUADRATURES, blur_rows, gaussian_kernel
from probe.methods.windows import check_margin, check_windows, default_windows, full_window
from probe.models.anchors import feed
from probe.probes.base import EvalData, Probe, ProbeResult
from probe.probes.bounds import attribution_batches, bound_attrs, image_choice

METHODS = ("ig", "lam", "saliency", "input_x_gradient", "smoothgrad")
BASELINES = ("zero", "blur", "mean", "clean")
COMPONENT_METHODS = ("ig", "lam", "input_x_gradient")
IMAGE_METRICS = ("diffusion_index", "map_size", "diffusion_index_corrected", "effective_pixels",
                 "share_in_mask", "mask_fraction", "mask_enrichment", "share_on_rain", "rain_contribution",
                 "background_contribution", "objective_value", "convergence_delta", "relative_delta",
                 "crop_fraction", "deletion_gain", "insertion_gain")
#: faithfulness scores (:mod:`probe.methods.faithfulness`): stored with a CI over images and a flag when the
#: map is no better than random orders
FAITH_METRICS = ("deletion_gain", "insertion_gain")
#: metrics computed from the attribution map (NaN when the map is all zero or non-finite)
MAP_METRICS = ("diffusion_index", "diffusion_index_corrected", "effective_pixels", "share_in_mask",
               "mask_enrichment", "share_on_rain")
ZERO_MAP = "zero attribution map (the objective does not change along the path, e.g. nothing removed)"
NONFINITE_MAP = "non-finite attribution (NaN/inf in the model output or its gradients)"


class Attribution(Probe):
    """Attribution maps, Diffusion Index and rain/background attribution shares (see module doc)."""

    name = "attribution"
    description = "attribution maps (IG, LAM, captum), diffusion index, share of attribution on rain"
    defaults: dict[str, Any] = {
        "method": "ig",
        "objective": None,  # None: "lam_removed" for method "lam", else "removed" (what the network removes)
        "objective_params": {},
        "window": 16,
        "windows": ["on", "off"],
        "border_margin": "auto",  # pixels from the image border: "auto" = max(window // 2, min(H, W) // 8)
        "steps": 50,
        "quadrature": None,  # None: "finite_difference" (LAM's scheme) for lam, "gausslegendre" for ig
        "internal_batch_size": 16,
        "n_images": 4,
        "baseline": "zero",
        "sigma": 1.2,
        "kernel_size": 9,
        "smoothgrad_samples": 16,
        "smoothgrad_stdev": 0.1,
        "components": True,
        "crop": "auto",
        **FAITHFULNESS_PARAMS,
        "splits": None,
        "seed": 0,
    }

    def validate(self) -> None:
        p = self.params
        if p["method"] not in METHODS:
            raise ConfigError(f"attribution: 'method' must be one of {list(METHODS)}, got {p['method']!r}")
        if p["objective"] is None:
            p["objective"] = "lam_removed" if p["method"] == "lam" else "removed"
        if p["objective"] not in OBJECTIVES:
            raise ConfigError(f"attribution: unknown objective {p['objective']!r}; "
                              f"available: {', '.join(OBJECTIVES.names())}")
        if not isinstance(p["objective_params"], dict):
            raise ConfigError("attribution: 'objective_params' must be a table/dict")
        make_objective(p["objective"], **p["objective_params"])  # validates its parameters
        for key, low in (("window", 1), ("steps", 1), ("n_images", 1), ("smoothgrad_samples", 1)):
            if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < low:
                raise ConfigError(f"attribution: {key!r} must be an integer >= {low}, got {p[key]!r}")
        check_margin("attribution", p["border_margin"])
        p["windows"] = check_windows("attribution", p["windows"])
        if p["quadrature"] is None:
            p["quadrature"] = "finite_difference" if p["method"] == "lam" else "gausslegendre"
        if p["quadrature"] not in QUADRATURES:
            raise ConfigError(f"attribution: 'quadrature' must be one of {list(QUADRATURES)}, "
                              f"got {p['quadrature']!r}")
        if p["quadrature"] == "riemann_trapezoid" and p["steps"] < 2:
            raise ConfigError("attribution: 'steps' must be >= 2 for riemann_trapezoid")
        ibs = p["internal_batch_size"]
        if ibs is not None and (not isinstance(ibs, int) or isinstance(ibs, bool) or ibs < 1):
            raise ConfigError(f"attribution: 'internal_batch_size' must be an integer >= 1 or null, got {ibs!r}")
        if p["baseline"] not in BASELINES:
            raise ConfigError(f"attribution: 'baseline' must be one of {list(BASELINES)}, got {p['baseline']!r}")
        if p["method"] == "lam" and p["baseline"] != "zero":
            raise ConfigError("attribution: 'baseline' applies to method 'ig' only (lam starts from the "
                              "blurred image)")
        if not isinstance(p["sigma"], (int, float)) or p["sigma"] <= 0:
            raise ConfigError(f"attribution: 'sigma' must be > 0, got {p['sigma']!r}")
        ks = p["kernel_size"]
        if not isinstance(ks, int) or ks < 3 or ks % 2 == 0:
            raise ConfigError(f"attribution: 'kernel_size' must be an odd integer >= 3, got {ks!r}")
        if not isinstance(p["smoothgrad_stdev"], (int, float)) or p["smoothgrad_stdev"] < 0:
            raise ConfigError(f"attribution: 'smoothgrad_stdev' must be >= 0, got {p['smoothgrad_stdev']!r}")
        if not isinstance(p["components"], bool):
            raise ConfigError(f"attribution: 'components' must be true or false, got {p['components']!r}")
        check_faithfulness("attribution", p)
        if p["crop"] not in ("auto", "none"):
            raise ConfigError(f"attribution: 'crop' must be 'auto' or 'none', got {p['crop']!r}")
        if p["splits"] is not None and (not isinstance(p["splits"], (list, tuple))
                                        or not all(isinstance(s, str) for s in p["splits"])):
            raise ConfigError(f"attribution: 'splits' must be a list of split names, got {p['splits']!r}")
        if not isinstance(p["seed"], int):
            raise ConfigError(f"attribution: 'seed' must be an integer, got {p['seed']!r}")

    # ------------------------------------------------------------------------------------------- run
    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:
        import xarray as xr

        from probe.progress import progress

        p = self.params
        data = data.select(p["splits"])
        if not data.splits:
            raise DataError("attribution: the evaluation data has no splits")
        objective = make_objective(p["objective"], **p["objective_params"])
        feed(model, data)  # an oracle anchor needs the clean backgrounds
        device = next(iter(model.parameters()), torch.empty(0)).device
        splits = list(data.splits)
        n = min(p["n_images"], *(len(b) for b in data.splits.values()))
        first = data.splits[splits[0]]
        if first.degraded.dim() != 4:
            raise DataError(f"attribution: images must be (N,C,H,W), got {tuple(first.degraded.shape)}")
        c, h, w = first.degraded.shape[1:]
        self._ibs, self._faith_batch, batch_why = attribution_batches(p["internal_batch_size"], int(p["steps"]) * n,
                                                                      (int(h), int(w)))
        window_names = list(p["windows"]) if objective.uses_window else ["full"]
        with_components = p["components"] and p["method"] in COMPONENT_METHODS

        s_, w_ = len(splits), len(window_names)
        maps = np.zeros((s_, w_, n, h, w), np.float32)
        comp = np.zeros((s_, w_, 2, n, h, w), np.float32)
        inputs = np.zeros((s_, n, c, h, w), np.float32)
        masks = np.zeros((s_, n, h, w), np.float32)
        boxes = np.zeros((s_, w_, n, 4), np.int32)
        values = np.full((s_, w_, n, len(IMAGE_METRICS)), np.nan, np.float64)
        fpoints = p["faithfulness_points"]
        curves = np.full((s_, w_, n, 4, fpoints + 1), np.nan, np.float32)
        crop_kinds: list[str] = []
        path_desc: dict[str, Any] = {}

        was_training = model.training
        model.eval()
        try:
            jobs = [(si, wi) for si in range(s_) for wi in range(w_)]
            windows_cache: dict[int, dict[str, Any]] = {}
            for si, wi in progress(jobs, desc="attribution"):
                split = splits[si]
                batch = data.splits[split][:n].to(device)
                if tuple(batch.degraded.shape[1:]) != (c, h, w):
                    raise DataError(f"attribution: split {split!r} has images of shape "
                                    f"{tuple(batch.degraded.shape[1:])}, expected {(c, h, w)}")
                if si not in windows_cache:
                    windows_cache[si] = (default_windows(batch.mask, p["window"], p["border_margin"])
                                         if objective.uses_window
                                         else {"full": full_window(n, (h, w))})
                    inputs[si] = batch.degraded.float().cpu().numpy()
                    masks[si] = (batch.mask[:, 0] > 0.5).float().cpu().numpy()
                window = windows_cache[si][window_names[wi]]
                boxes[si, wi] = window.boxes()
                ctx = make_context(objective, window, (h, w), clean=batch.clean, mask=batch.mask, device=device)
                result, attr_b, attr_l = self._attribute(model, objective, batch.clean, batch.degraded, ctx)
                path_desc = result.info
                total = result.attributions[0] if attr_b is None else attr_b + attr_l
                amap = attribution_map(total)
                maps[si, wi] = amap
                row = values[si, wi]
                put = {name: k for k, name in enumerate(IMAGE_METRICS)}
                for i in range(n):
                    di = diffusion_index(amap[i])
                    row[i, put["diffusion_index"]] = di.value
                    row[i, put["map_size"]] = di.map_size
                    row[i, put["diffusion_index_corrected"]] = diffusion_index_corrected(amap[i])
                    row[i, put["effective_pixels"]] = effective_pixels(amap[i])
                for key, val in region_shares(amap, batch.mask).items():
                    row[:, put[key]] = val
                if attr_b is not None:
                    comp[si, wi, 0] = attribution_map(attr_b)
                    comp[si, wi, 1] = attribution_map(attr_l)
                    for key, val in component_shares(attr_b, attr_l).items():
                        row[:, put[key]] = val
                row[:, put["objective_value"]] = result.f_end.detach().double().cpu().numpy()
                if result.delta is not None:
                    row[:, put["convergence_delta"]] = result.delta.abs().double().cpu().numpy()
                    row[:, put["relative_delta"]] = result.relative_delta.double().cpu().numpy()
                crop = result.info.get("crop")
                row[:, put["crop_fraction"]] = (crop["height"] * crop["width"] / (h * w)) if crop else 1.0
                crop_kinds.append(f"{result.info.get('crop_kind', 'full')}: {result.info.get('crop_reason', '')}")
                if p["faithfulness"]:
                    faith = objective_curves(model, objective, batch.degraded, ctx,
                                             torch.from_numpy(np.nan_to_num(amap)),
                                             points=fpoints, random_orders=p["faithfulness_random"],
                                             seed=p["seed"], batch_size=self._faith_batch,
                                             crop=crop if result.info.get("crop_kind") == "receptive_field"
                                             else None)
                    curves[si, wi] = faith.curves
                    row[:, put["deletion_gain"]] = faith.deletion_gain
                    row[:, put["insertion_gain"]] = faith.insertion_gain
        finally:
            model.train(was_training)

        attrs = {"objective": objective.to_json(), "method": p["method"], "path": json.dumps(path_desc.get("path")),
                 "quadrature": str(path_desc.get("quadrature")), "steps": int(p["steps"]), "baseline": p["baseline"],
                 "crop": "; ".join(dict.fromkeys(crop_kinds)) or "full", **bound_attrs(
                     image_choice(n, min(len(b) for b in data.splits.values()), "n_images", p["n_images"]), batch_why)}
        image_coord = np.arange(n)
        arrays = {
            "attribution": xr.DataArray(maps, dims=("split", "window", "image", "y", "x"),
                                        coords={"split": splits, "window": window_names, "image": image_coord},
                                        attrs=dict(attrs)),
            "input": xr.DataArray(inputs, dims=("split", "image", "channel", "y", "x"),
                                  coords={"split": splits, "image": image_coord}, attrs=dict(attrs)),
            "rain_mask": xr.DataArray(masks, dims=("split", "image", "y", "x"),
                                      coords={"split": splits, "image": image_coord}, attrs=dict(attrs)),
            "window_box": xr.DataArray(boxes, dims=("split", "window", "image", "box"),
                                       coords={"split": splits, "window": window_names, "image": image_coord,
                                               "box": ["top", "left", "height", "width"]}, attrs=dict(attrs)),
            "image_metrics": xr.DataArray(values, dims=("split", "window", "image", "metric"),
                                          coords={"split": splits, "window": window_names, "image": image_coord,
                                                  "metric": list(IMAGE_METRICS)}, attrs=dict(attrs)),
        }
        if p["faithfulness"]:
            from probe.methods.faithfulness import FaithfulnessCurves

            arrays["faithfulness"] = xr.DataArray(
                curves, dims=("split", "window", "image", "curve", "fraction"),
                coords={"split": splits, "window": window_names, "image": image_coord,
                        "curve": list(FaithfulnessCurves.CURVES),
                        "fraction": np.linspace(0, 1, fpoints + 1) ** 2},
                attrs={**attrs, "perturbation_baseline": "blur (sigma 1.2, kernel 9)"})
        if with_components:
            arrays["attribution_component"] = xr.DataArray(
                comp, dims=("split", "window", "component", "image", "y", "x"),
                coords={"split": splits, "window": window_names, "component": ["background", "rain"],
                        "image": image_coord}, attrs=dict(attrs))

        result = ProbeResult(arrays=arrays)
        fixed = self._fixed_by_construction(with_components)
        skip = set() if with_components else {"share_on_rain", "rain_contribution", "background_contribution"}
        for si, split in enumerate(splits):
            for wi, wname in enumerate(window_names):
                finite_map = bool(np.isfinite(maps[si, wi]).all())
                empty = bool((np.nan_to_num(maps[si, wi]).reshape(n, -1).max(1) <= 0).all())
                for k, metric in enumerate(IMAGE_METRICS):
                    col = values[si, wi, :, k]
                    if metric in FAITH_METRICS:
                        if p["faithfulness"]:
                            mean, low, high, fflag = summarise_gain(col, seed=p["seed"])
                            result.add_metric(split, metric, mean, flag=fflag, ci_low=low, ci_high=high,
                                              window=wname, method=p["method"], objective=objective.name)
                        continue
                    flag = fixed.get(metric)
                    if flag is None and metric in MAP_METRICS:
                        flag = NONFINITE_MAP if not finite_map else ZERO_MAP if empty else None
                    if flag is None and np.all(np.isnan(col)):
                        if metric in skip or metric in ("convergence_delta", "relative_delta"):
                            continue  # not computed by this method
                        flag = "undefined for these images"
                    if flag is not None:
                        values[si, wi, :, k] = np.nan
                        result.add_metric(split, metric, None, flag=flag, window=wname, method=p["method"],
                                          objective=objective.name)
                        continue
                    value = np.nanmax(col) if metric == "relative_delta" else np.nanmean(col)
                    result.add_metric(split, metric, value, window=wname, method=p["method"],
                                      objective=objective.name)
        return result

    def _fixed_by_construction(self, with_components: bool) -> dict[str, str]:
        """Metric → reason for the metrics whose value the configuration fixes whatever the network does."""
        p = self.params
        if with_components and p["method"] == "ig" and p["baseline"] == "clean":
            reason = "fixed by construction: baseline='clean' makes A_B = 0 (share_on_rain = 1 for any network)"
            return {"share_on_rain": reason, "background_contribution": reason}
        return {}

    # ------------------------------------------------------------------------------------- internals
    def _baselines(self, clean: Tensor, layer: Tensor) -> tuple[Tensor, Tensor]:
        kind = self.params["baseline"]
        if kind == "zero":
            return torch.zeros_like(clean), torch.zeros_like(layer)
        if kind == "clean":
            return clean, torch.zeros_like(layer)
        if kind == "mean":
            return (clean.mean((-2, -1), keepdim=True).expand_as(clean),
                    layer.mean((-2, -1), keepdim=True).expand_as(layer))
        kernel = torch.from_numpy(gaussian_kernel(self.params["kernel_size"], float(self.params["sigma"])))
        kernels = kernel.float().to(clean.device).expand(clean.shape[0], -1, -1)
        return blur_rows(clean, kernels), blur_rows(layer, kernels)

    def _attribute(self, model: nn.Module, objective, clean: Tensor, degraded: Tensor,
                   ctx: dict[str, Tensor]) -> tuple[PathAttribution, Tensor | None, Tensor | None]:
        p = self.params
        method = p["method"]
        keys, extra = tuple(ctx), tuple(ctx.values())
        components = p["components"] and method in COMPONENT_METHODS
        layer = degraded - clean
        if components:
            fwd = ObjectiveForward(model, objective, n_inputs=2, context_keys=keys)
            inputs: tuple[Tensor, ...] = (clean, layer)
        else:
            fwd = ObjectiveForward(model, objective, n_inputs=1, context_keys=keys)
            inputs = (degraded,)
        if method in ("ig", "lam"):
            if method == "ig":
                base_b, base_l = self._baselines(clean, layer)
                baselines = (base_b, base_l) if components else (base_b + base_l,)
                path, path_params = "linear", None
            else:
                baselines = None
                path, path_params = "blur", {"sigma": float(p["sigma"]), "kernel_size": p["kernel_size"]}
            res = path_integrated_gradients(fwd, inputs, baselines, path=path, path_params=path_params,
                                            steps=p["steps"], method=p["quadrature"],
                                            internal_batch_size=self._ibs, additional=extra,
                                            crop=None if p["crop"] == "none" or not getattr(model, "croppable", True)
                                            else "auto")
        else:
            res = captum_attribute(method, fwd, inputs, additional=extra,
                                   internal_batch_size=self._ibs,
                                   nt_samples=p["smoothgrad_samples"], stdev=float(p["smoothgrad_stdev"]),
                                   seed=p["seed"])
            res.info["path"] = None
        if components:
            return res, res.attributions[0], res.attributions[1]
        return res, None, None
