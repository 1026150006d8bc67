"""The ``activations`` probe: what each probe point's activations look like, and whether they follow the rain.

Per split of the evaluation set and per probe point (layer), streamed over batches (one batch's activations
alive at a time; statistics merged in float64):

* ``mean``, ``std`` (over every entry), ``zero_fraction`` (entries with |a| ≤ ``zero_tol``),
  ``dead_fraction`` (channels with |a| ≤ ``dead_tol`` everywhere in the split) — dims ``(split, layer)``;
  ``channel_mean``, ``channel_std`` — ``(split, layer, channel)``, NaN-padded beyond a layer's
  ``n_channels`` (coordinate on ``layer``).
* **Rain-vs-background separability** of per-pixel features, from balanced seeded pixel samples (up to
  ``pixels_per_class`` pixels inside and as many outside ``mask`` per image, mapped to each layer's own
  resolution): ``fisher_ratio`` = δᵀ(Σ₀ + Σ₁ + λI)⁻¹δ (δ the class-mean difference, Σ the class covariances,
  λ = 1e-6·tr(Σ₀ + Σ₁)/C), and ``probe_accuracy`` of a logistic regression (standardised features, C = 1)
  trained on the samples of half of the images and tested on the other half (chance = 0.5) —
  ``(split, layer)``; NaN where a split has no mask pixels (a clean split) or fewer than 2 such images.
* **Component sensitivity**: relative response change Σᵢ‖f(x′ᵢ) − f(Oᵢ)‖ / Σᵢ‖f(Oᵢ)‖ when only the
  degradation changes (x′ = B + D′, D′ re-sampled with ``data.degradations[split]`` and seed
  ``data.seed + 7919 + split index``) vs when only the background changes (x′ = clamp(B′ + D, 0, 1),
  B′ = ``data.alt_clean``; exact for additive degradations — rain, noise — and the additive approximation for
  blur) → ``sensitivity`` ``(split, change, layer)`` with change ∈ {degradation, background},
  ``sensitivity_ratio`` = degradation / background ``(split, layer)`` (> 1: the layer follows the rain more
  than the content), and ``input_sensitivity`` ``(split, change)`` — the same measure on the input images,
  the baseline the layer ratios should be read against. NaN where ``alt_clean`` or the degradation is absent.

Metric rows per split and layer (``layer``, ``depth`` columns): mean, std, zero_fraction, dead_fraction,
fisher_ratio, probe_accuracy, sensitivity_ratio (undefined values are left out; at a layer with NaN/inf
activations every row is NaN with a ``flag``, never a number); per split ``input_sensitivity_ratio``::

    from probe.probes import PROBES
    result = PROBES.get("activations")(n_images=8).run(model, data)
    result.arrays["sensitivity_ratio"].sel(split="ood")        # one value per layer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from probe.errors import ConfigError
from probe.methods.capture import BatchContext, evaluating, even_batches, iterate_features, resolve_layers
from probe.methods.reducers import balanced_pixel_positions, gather_pixels, to_nchw
from probe.models.anchors import feed
from probe.probes._validate import int_param, names_param, number_param
from probe.probes.base import EvalData, Probe, ProbeResult

CHANGES = ("degradation", "background")
SEED_OFFSET = 7919

__all__ = ["Activations", "fisher_ratio", "probe_accuracy"]

NONFINITE_FLAG = "non-finite activations (NaN/inf at this layer)"


# ----------------------------------------------------------------------------------------------- measures

def fisher_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """Two-class Fisher ratio δᵀ(Σ₀ + Σ₁ + λI)⁻¹δ of features ``x`` ``(M, C)`` with labels ``y`` ∈ {0, 1}
    (the squared separation along the best linear direction; 0 for identical classes)::

        x = np.random.default_rng(0).standard_normal((20, 3))
        y = np.arange(20) % 2
        fisher_ratio(x + 2.0 * y[:, None], y)      # large: the classes are 2 apart in every channel
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    a, b = x[y == 1], x[y == 0]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    delta = a.mean(0) - b.mean(0)
    scatter = np.atleast_2d(np.cov(a, rowvar=False, bias=True)) + np.atleast_2d(np.cov(b, rowvar=False, bias=True))
    ridge = 1e-6 * float(np.trace(scatter)) / scatter.shape[0] + 1e-12
    return float(delta @ np.linalg.solve(scatter + ridge * np.eye(scatter.shape[0]), delta))


def probe_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression (standardised features) trained on the samples of every
    other group (image) in sorted order and tested on the rest; NaN with fewer than 2 groups or one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        return float("nan")
    train = np.isin(groups, uniq[::2])
    if len(np.unique(y[train])) < 2 or len(np.unique(y[~train])) < 2:
        return float("nan")
    if np.ptp(x[train], axis=0).max(initial=0.0) == 0:  # constant features: nothing to learn
        return float(max(np.mean(y[~train] == 0), np.mean(y[~train] == 1)))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    clf.fit(x[train], y[train])
    return float(clf.score(x[~train], y[~train]))


# ----------------------------------------------------------------------------------------------- reducers

def _flat(tensor: Tensor, ctx: BatchContext) -> Tensor:
    return tensor.reshape(tensor.shape[0], -1).float()


class _StatsReducer:
    """Per batch and layer: channel count / mean / M2 / zeros / max|a| (float64) and the sampled pixels."""

    def __init__(self, positions: Tensor, image: Tensor, zero_tol: float):
        self.positions, self.image, self.zero_tol = positions, image, zero_tol

    def __call__(self, tensor: Tensor, ctx: BatchContext) -> dict[str, Any]:
        maps = to_nchw(tensor, ctx.input_hw).float()
        c = maps.shape[1]
        count = maps.numel() // c
        mean = maps.sum(dim=(0, 2, 3), dtype=torch.float64) / count
        centred = maps - mean.to(maps.dtype).view(1, c, 1, 1)
        m2 = centred.square().sum(dim=(0, 2, 3), dtype=torch.float64)
        zeros = (maps.abs() <= self.zero_tol).sum(dim=(0, 2, 3)).to(torch.float64)
        absmax = maps.abs().amax(dim=(0, 2, 3)).to(torch.float64)
        out: dict[str, Any] = {"count": count, "mean": mean, "m2": m2, "zeros": zeros, "absmax": absmax}
        if self.image.numel():
            idx = ctx.indices.to(self.image.device)
            keep = torch.isin(self.image, idx)
            local = torch.searchsorted(idx, self.image[keep])
            out["pixels"] = gather_pixels(maps, local, self.positions[keep], ctx.input_hw)
        return out


class _Stats:
    """Chan et al.'s parallel merge of per-channel mean / M2, plus zero counts and max |a|."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.zeros: Tensor | None = None
        self.absmax: Tensor | None = None
        self.pixels: list[Tensor] = []

    def add(self, part: dict[str, Any]) -> None:
        n_b = part["count"]
        if self.mean is None:
            self.count, self.mean, self.m2 = n_b, part["mean"].clone(), part["m2"].clone()
            self.zeros, self.absmax = part["zeros"].clone(), part["absmax"].clone()
        else:
            assert self.m2 is not None and self.zeros is not None and self.absmax is not None
            total = self.count + n_b
            delta = part["mean"] - self.mean
            self.mean = self.mean + delta * (n_b / total)
            self.m2 = self.m2 + part["m2"] + delta.square() * (self.count * n_b / total)
            self.zeros = self.zeros + part["zeros"]
            self.absmax = torch.maximum(self.absmax, part["absmax"])
            self.count = total
        if "pixels" in part:
            self.pixels.append(part["pixels"])


# ----------------------------------------------------------------------------------------------- probe

class Activations(Probe):
    """Activation statistics, rain-vs-background separability and component sensitivity per layer."""

    name = "activations"
    description = "activation statistics, rain/background separability and sensitivity per probe point"
    defaults = {
        "layers": None,            # probe points (default all) or module names
        "splits": None,            # default all
        "n_images": 32,            # per split (null: all)
        "batch_size": 8,           # images per forward pass
        "pixels_per_class": 64,    # separability samples per image and class
        "zero_tol": 0.0,           # |a| <= zero_tol counts as zero
        "dead_tol": 0.0,           # a channel with |a| <= dead_tol everywhere is dead
        "seed": 0,                 # pixel sampling
        "separability": True,
        "sensitivity": True,
    }

    def validate(self) -> None:
        p = self.params
        names_param(self.name, "layers", p["layers"])
        names_param(self.name, "splits", p["splits"])
        int_param(self.name, "n_images", p["n_images"], 1, allow_none=True)
        int_param(self.name, "batch_size", p["batch_size"], 1)
        int_param(self.name, "pixels_per_class", p["pixels_per_class"], 1)
        int_param(self.name, "seed", p["seed"], 0)
        number_param(self.name, "zero_tol", p["zero_tol"], minimum=0.0)
        number_param(self.name, "dead_tol", p["dead_tol"], minimum=0.0)
        for key in ("separability", "sensitivity"):
            if not isinstance(p[key], bool):
                raise ConfigError(f"activations: {key!r} must be true or false, got {p[key]!r}")

    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:
        p = self.params
        data = data.select(names_param(self.name, "splits", p["splits"]))
        layers = resolve_layers(model, names_param(self.name, "layers", p["layers"]))
        feed(model, data)
        result = ProbeResult()
        split_names = list(data.splits)
        per_split: list[dict[str, Any]] = []
        names: list[str] | None = None
        from probe.probes.bounds import image_choice, images_per_forward

        first = data.splits[split_names[0]]
        self._batch, self._batch_why = images_per_forward(p["batch_size"], tuple(first.degraded.shape[-2:]))
        sizes = [len(b) for b in data.splits.values()]
        used = min(sizes) if p["n_images"] is None else min(p["n_images"], min(sizes))
        self._images_text = image_choice(used, min(sizes), "n_images", p["n_images"])
        with evaluating(model):
            for s_index, split in enumerate(split_names):
                out = self._split(model, data, split, s_index, layers)
                if names is None:
                    names = out["names"]
                elif out["names"] != names:
                    raise ConfigError(f"activations: layers captured in split {split!r} differ from the first split")
                per_split.append(out)
        assert names is not None
        self._assemble(result, split_names, names, per_split)
        return result

    # -- one split -------------------------------------------------------------------------------------
    def _split(self, model: nn.Module, data: EvalData, split: str, s_index: int, layers: list[str]) -> dict:
        p = self.params
        batch = data.splits[split]
        n = len(batch) if p["n_images"] is None else min(p["n_images"], len(batch))
        if n < 1:
            raise ConfigError(f"activations: split {split!r} has no images")
        images = batch.degraded[:n]
        if p["separability"]:
            positions, image, label = balanced_pixel_positions(batch.mask[:n], p["pixels_per_class"],
                                                               p["seed"] + s_index)
        else:
            positions, image, label = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0)
        reducer = _StatsReducer(positions, image, float(p["zero_tol"]))
        stats: dict[str, _Stats] = {}
        slices = even_batches(n, self._batch)
        for feats in iterate_features(model, images, layers, self._batch, reducer=reducer, batches=slices):
            for name, part in feats.items():
                stats.setdefault(name, _Stats()).add(part)
        names = list(stats)
        out: dict[str, Any] = {"names": names, "stats": stats, "label": label.numpy(), "image": image.numpy()}
        if p["sensitivity"]:
            out["sensitivity"] = self._sensitivity(model, data, split, s_index, layers, n, names)
        return out

    def _sensitivity(self, model: nn.Module, data: EvalData, split: str, s_index: int, layers: list[str],
                     n: int, names: list[str]) -> dict[str, Any]:
        """Per layer Σᵢ‖f(x′ᵢ) − f(Oᵢ)‖ / Σᵢ‖f(Oᵢ)‖ for each change; per batch only f(O) is held, the
        changed inputs' features are reduced to per-image distances inside the hooks."""
        batch = data.splits[split]
        variants: dict[str, Tensor] = {}
        m = n
        if data.alt_clean is not None:
            alt = data.alt_clean
            if alt.shape[1:] != batch.clean.shape[1:]:
                raise ConfigError(f"activations: alt_clean has shape {tuple(alt.shape[1:])}, split {split!r} "
                                  f"images {tuple(batch.clean.shape[1:])}")
            m = min(n, alt.shape[0])
        deg = data.degradations.get(split) if data.degradations else None
        if deg is not None:
            if isinstance(deg, Mapping):
                from probe.data.degradations import make_degradation

                deg = make_degradation(deg)
            gen = torch.Generator().manual_seed(int(data.seed) + SEED_OFFSET + s_index)
            # synthesised on the CPU: the same inputs (and results) whichever device the data lives on
            variants["degradation"] = deg.apply(batch.clean[:m].cpu(), gen).degraded.to(batch.clean.device)
        if data.alt_clean is not None:
            variants["background"] = (data.alt_clean[:m].to(batch.layer.device) + batch.layer[:m]).clamp(0, 1)
        ref_images = batch.degraded[:m]
        if "degradation" in variants:  # an oracle anchor must know the background of every input
            feed(model, variants["degradation"], batch.clean[:m])
        if "background" in variants:
            feed(model, variants["background"], data.alt_clean[:m].to(batch.clean.device))
        moved = {c: 0.0 for c in CHANGES}
        values = np.full((len(CHANGES), len(names)), np.nan)
        inputs = np.full(len(CHANGES), np.nan)
        if not variants:
            return {"values": values, "inputs": inputs}
        change_sum = {c: dict.fromkeys(names, 0.0) for c in variants}
        base_sum = dict.fromkeys(names, 0.0)
        for piece in even_batches(m, self._batch):
            ref = next(iterate_features(model, ref_images[piece], layers, batch_size=m, reducer=_flat,
                                       to_cpu=False))  # stays on the model's device
            for name in names:
                base_sum[name] += float(ref[name].double().norm(dim=1).sum())

            def distance(tensor: Tensor, ctx: BatchContext, ref: dict[str, Tensor] = ref) -> Tensor:
                other = tensor.reshape(tensor.shape[0], -1).float()
                return (other - ref[ctx.layer].to(other.device)).double().norm(dim=1)

            for change, images in variants.items():
                dists = next(iterate_features(model, images[piece], layers, batch_size=m, reducer=distance))
                for name in names:
                    change_sum[change][name] += float(dists[name].sum())
                moved[change] += float((images[piece] - ref_images[piece]).flatten(1).norm(dim=1).sum())
        input_norm = float(ref_images.flatten(1).norm(dim=1).sum())
        for ci, change in enumerate(CHANGES):
            if change not in variants:
                continue
            inputs[ci] = moved[change] / input_norm if input_norm > 0 else np.nan
            for li, name in enumerate(names):
                num, den = change_sum[change][name], base_sum[name]
                values[ci, li] = num / den if den > 0 else (0.0 if num == 0 else np.inf)
        return {"values": values, "inputs": inputs}

    # -- arrays and metrics ------------------------------------------------------------------------------
    def _assemble(self, result: ProbeResult, split_names: list[str], names: list[str], per_split: list[dict]
                  ) -> None:
        p = self.params
        n_s, n_l = len(split_names), len(names)
        n_channels = [int(per_split[0]["stats"][name].mean.numel()) for name in names]
        c_max = max(n_channels)
        scalars = {k: np.full((n_s, n_l), np.nan) for k in ("mean", "std", "zero_fraction", "dead_fraction",
                                                              "fisher_ratio", "probe_accuracy")}
        ch_mean = np.full((n_s, n_l, c_max), np.nan)
        ch_std = np.full((n_s, n_l, c_max), np.nan)
        nonfinite = np.zeros((n_s, n_l), dtype=bool)
        for si, out in enumerate(per_split):
            for li, name in enumerate(names):
                st: _Stats = out["stats"][name]
                assert st.mean is not None and st.m2 is not None and st.zeros is not None
                assert st.absmax is not None
                c = st.mean.numel()
                mean_c = st.mean.numpy()
                overall = float(mean_c.mean())
                m2_total = float(st.m2.sum()) + st.count * float(((mean_c - overall) ** 2).sum())
                scalars["mean"][si, li] = overall
                scalars["std"][si, li] = float(np.sqrt(m2_total / (st.count * c)))
                scalars["zero_fraction"][si, li] = float(st.zeros.sum()) / (st.count * c)
                scalars["dead_fraction"][si, li] = float((st.absmax <= p["dead_tol"]).double().mean())
                ch_mean[si, li, :c] = mean_c
                ch_std[si, li, :c] = np.sqrt(st.m2.numpy() / st.count)
                if not (np.isfinite(mean_c).all() and bool(torch.isfinite(st.absmax).all())):
                    nonfinite[si, li] = True  # NaN/inf activations: no statistic of this layer is a number
                    for values in scalars.values():
                        values[si, li] = np.nan
                    continue
                if st.pixels:
                    x = torch.cat(st.pixels).numpy()
                    scalars["fisher_ratio"][si, li] = fisher_ratio(x, out["label"])
                    scalars["probe_accuracy"][si, li] = probe_accuracy(x, out["label"], out["image"])
        depth = ("layer", np.arange(n_l))
        base = {"split": split_names, "layer": names, "depth": depth}
        bounds = {"images": self._images_text, **({"batch_bound": self._batch_why} if self._batch_why else {})}
        attrs = {"zero_tol": float(p["zero_tol"]), "dead_tol": float(p["dead_tol"]), **bounds}
        for key, values in scalars.items():
            if key in ("fisher_ratio", "probe_accuracy") and not p["separability"]:
                continue
            extra = {"pixels_per_class": int(p["pixels_per_class"]), "seed": int(p["seed"]), **bounds} \
                if key in ("fisher_ratio", "probe_accuracy") else attrs
            result.arrays[key] = xr.DataArray(values, dims=("split", "layer"), coords=base, attrs=extra, name=key)
        ccoords = {**base, "channel": np.arange(c_max), "n_channels": ("layer", np.array(n_channels))}
        result.arrays["channel_mean"] = xr.DataArray(ch_mean, dims=("split", "layer", "channel"), coords=ccoords,
                                                     name="channel_mean")
        result.arrays["channel_std"] = xr.DataArray(ch_std, dims=("split", "layer", "channel"), coords=ccoords,
                                                    name="channel_std")
        ratio = None
        if p["sensitivity"]:
            sens = np.stack([out["sensitivity"]["values"] for out in per_split])  # (split, change, layer)
            inputs = np.stack([out["sensitivity"]["inputs"] for out in per_split])  # (split, change)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = sens[:, 0] / sens[:, 1]
                input_ratio = inputs[:, 0] / inputs[:, 1]
            result.arrays["sensitivity"] = xr.DataArray(
                sens, dims=("split", "change", "layer"), coords={**base, "change": list(CHANGES)},
                name="sensitivity")
            result.arrays["sensitivity_ratio"] = xr.DataArray(ratio, dims=("split", "layer"), coords=base,
                                                              name="sensitivity_ratio")
            result.arrays["input_sensitivity"] = xr.DataArray(
                inputs, dims=("split", "change"), coords={"split": split_names, "change": list(CHANGES)},
                name="input_sensitivity")
            for si, split in enumerate(split_names):
                if np.isfinite(input_ratio[si]):
                    result.add_metric(split, "input_sensitivity_ratio", float(input_ratio[si]))
        for si, split in enumerate(split_names):
            for li, name in enumerate(names):
                rows = {k: v[si, li] for k, v in scalars.items()}
                if ratio is not None:
                    rows["sensitivity_ratio"] = ratio[si, li]
                for metric, value in rows.items():
                    if metric in ("fisher_ratio", "probe_accuracy") and not p["separability"]:
                        continue
                    if np.isfinite(value) or nonfinite[si, li]:  # broken layers: NaN rows with the reason
                        result.add_metric(split, metric, float(value), layer=name, depth=li,
                                          flag=NONFINITE_FLAG if nonfinite[si, li] else None)
