"""The ``cka`` probe: how similar are a network's layers, and does each layer track the background or the rain?

For every split of the evaluation set (math and guards in :mod:`probe.methods.cka`):

* ``layer_cka`` ``(split, layer_a, layer_b)``: CKA between every pair of probe points on the degraded input.
* ``alignment`` ``(split, target, layer)``: CKA between a layer's features on the degraded input O = B + D and
  its features on ``target = "clean"`` (the background B alone) or ``target = "degradation"`` (the layer D
  alone: ``clamp(D, 0, 1)`` — D on black — by default, or raw D with ``degradation_input="layer"``), through the
  same network. The shortcut signature is high alignment with the degradation at depth.
* ``layer_cka_degenerate`` / ``alignment_degenerate``: True where a representation is constant and the CKA is
  defined as 0 (e.g. the degradation input of a clean split), or non-finite (NaN/inf activations) and the
  CKA is NaN. Metric rows carry the reason in their ``flag`` column.

Metric rows per split and layer: ``align_clean``, ``align_degradation`` (with ``layer`` and ``depth``); per
split ``align_gap_deep`` = mean over the deepest third of the layers of (align_degradation − align_clean).

Sample conventions for dense maps (stored in every array's attrs): ``"image"`` — one sample per image, C·H·W
features; HSIC accumulated over minibatches of ``batch_size`` images (≥ 4 each; ``batch_size >= n_images``
gives the full-sample estimate) from Gram matrices computed inside the forward hooks, so activations never
pile up. ``"pooled"`` — one sample per image, the C channel means. ``"pixels"`` — ``pixels_per_image`` seeded
random positions per image (the same positions for every layer, at each layer's resolution, and for every
input), C features each; full-sample estimate::

    from probe.probes import PROBES
    result = PROBES.get("cka")(kernel="linear", convention="image", n_images=16).run(model, data)
    result.arrays["alignment"].sel(target="degradation")      # (split, layer)

Across models, :func:`cross_model_cka` gives ``(model_a, model_b, layer)`` at matching probe points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from probe.errors import ConfigError
from probe.methods.capture import available_layers, evaluating, even_batches, iterate_features, resolve_layers
from probe.methods.cka import MinibatchCKA
from probe.methods.hsic import ESTIMATORS, KERNELS, MIN_SAMPLES, CKAMatrix, gram_linear
from probe.methods.reducers import PixelSampler, pool, random_pixel_positions
from probe.models.anchors import feed
from probe.probes._validate import choice_param, int_param, names_param, number_param
from probe.probes.base import EvalData, Probe, ProbeResult

CONVENTIONS = ("image", "pooled", "pixels")
NONFINITE_FLAG = "non-finite features (NaN/inf activations at this layer)"
DEGENERATE_FLAG = "degenerate: constant representation, CKA defined as 0"

__all__ = ["CONVENTIONS", "CKAProbe", "Representations", "cross_model_cka", "extract_representations"]


@dataclass
class Representations:
    """One model's representations of one set of inputs, ready for CKA.

    ``kind = "gram"`` (image convention): ``batches`` is a list of ``{layer: (b, b) linear Gram}``, one per
    minibatch; ``kind = "features"`` (pooled / pixels): one entry ``{layer: (n, C) features}``.
    """

    kind: str
    layers: list[str]
    batches: list[dict[str, Tensor]]
    n_samples: int


def _gram_reducer(tensor: Tensor, ctx: Any) -> Tensor:
    return gram_linear(tensor.reshape(tensor.shape[0], -1))


def extract_representations(model: nn.Module, images: Tensor, layers: Sequence[str] | None = None, *,
                            convention: str = "image", batch_size: int = 32, pixels_per_image: int = 64,
                            seed: int = 0) -> Representations:
    """Run ``model`` over ``images`` ``(N, C, H, W)`` and keep what CKA needs under a sample ``convention``.

    Memory: per batch only the reduced values (Gram matrices, channel means or sampled pixels) survive::

        reps = extract_representations(model, images, convention="pixels", pixels_per_image=32)
        reps.batches[0]["hook_head"].shape         # (N * 32, C)
    """
    choice_param("cka", "convention", convention, CONVENTIONS)
    n = int(images.shape[0])
    if n < MIN_SAMPLES:
        raise ConfigError(f"CKA needs at least {MIN_SAMPLES} images, got {n}")
    if convention == "image":
        slices = even_batches(n, batch_size, min_size=MIN_SAMPLES)
        reducer: Callable[..., Tensor] = _gram_reducer
    else:
        slices = even_batches(n, batch_size)
        reducer = pool if convention == "pooled" else PixelSampler(random_pixel_positions(n, pixels_per_image, seed))
    batches: list[dict[str, Tensor]] = []
    with evaluating(model):
        for feats in iterate_features(model, images, layers, batch_size, reducer=reducer, batches=slices):
            batches.append(feats)
    names = list(batches[0])
    for feats in batches[1:]:
        if list(feats) != names:
            raise ConfigError(f"layers captured differ between batches ({names} vs {list(feats)})")
    if convention == "image":
        return Representations("gram", names, batches, n)
    merged = {name: torch.cat([b[name] for b in batches]) for name in names}
    return Representations("features", names, [merged], int(merged[names[0]].shape[0]))


def _accumulate(acc: MinibatchCKA, reps_a: Sequence[Representations], layers_a: Sequence[str],
                reps_b: Sequence[Representations] | None = None, layers_b: Sequence[str] | None = None
                ) -> CKAMatrix:
    """Feed aligned batches: side a takes ``reps_a[i].batches[b][layers_a[i]]`` (one rep per entry)."""
    kinds = {r.kind for r in reps_a} | ({r.kind for r in reps_b} if reps_b else set())
    if len(kinds) != 1:
        raise ConfigError("cannot compare representations of different sample conventions")
    kind = kinds.pop()
    n_batches = {len(r.batches) for r in reps_a} | ({len(r.batches) for r in reps_b} if reps_b else set())
    if len(n_batches) != 1:
        raise ConfigError("representations were extracted with different batches")
    for b in range(n_batches.pop()):
        xs = [rep.batches[b][name] for rep, name in zip(reps_a, layers_a)]
        ys = None if reps_b is None else [rep.batches[b][name] for rep, name in zip(reps_b, layers_b or [])]
        if kind == "gram":
            acc.update_grams(xs, ys)
        else:
            acc.update(xs, ys)
    return acc.result()


class CKAProbe(Probe):
    """Layer × layer CKA and alignment of each layer with the clean background vs the degradation alone."""

    name = "cka"
    description = "CKA between layers, and alignment of each layer with the background vs the degradation"
    defaults = {
        "layers": None,          # probe points (default: all); any module names for a user's model
        "splits": None,          # default: all splits
        "kernel": "linear",      # linear | rbf
        "estimator": "unbiased",  # unbiased (Nguyen HSIC_1) | biased
        "convention": "image",   # image | pooled | pixels
        "n_images": 32,          # per split (null: all)
        "batch_size": 32,        # images per forward pass (= per HSIC minibatch for "image")
        "pixels_per_image": 64,  # "pixels" convention
        "threshold": 1.0,        # RBF bandwidth = threshold x median distance
        "seed": 0,               # pixel positions
        "degradation_input": "black",  # black: clamp(D, 0, 1) | layer: raw D
        "alignment": True,       # also compute the alignment arrays
    }

    def validate(self) -> None:
        p = self.params
        names_param(self.name, "layers", p["layers"])
        names_param(self.name, "splits", p["splits"])
        choice_param(self.name, "kernel", p["kernel"], KERNELS)
        choice_param(self.name, "estimator", p["estimator"], ESTIMATORS)
        choice_param(self.name, "convention", p["convention"], CONVENTIONS)
        int_param(self.name, "n_images", p["n_images"], MIN_SAMPLES, allow_none=True)
        int_param(self.name, "batch_size", p["batch_size"], MIN_SAMPLES)
        int_param(self.name, "pixels_per_image", p["pixels_per_image"], 1)
        int_param(self.name, "seed", p["seed"], 0)
        number_param(self.name, "threshold", p["threshold"], positive=True)
        choice_param(self.name, "degradation_input", p["degradation_input"], ("black", "layer"))
        if not isinstance(p["alignment"], bool):
            raise ConfigError(f"cka: 'alignment' must be true or false, got {p['alignment']!r}")

    def _extract(self, model: nn.Module, images: Tensor, layers: list[str]) -> Representations:
        p = self.params
        return extract_representations(model, images, layers, convention=p["convention"],
                                       batch_size=self._batch, pixels_per_image=p["pixels_per_image"],
                                       seed=p["seed"])

    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:
        p = self.params
        data = data.select(names_param(self.name, "splits", p["splits"]))
        layers = resolve_layers(model, names_param(self.name, "layers", p["layers"]))
        feed(model, data)  # an oracle anchor needs the clean backgrounds (and black under raw D)
        for batch in data.splits.values():
            feed(model, batch.layer, torch.zeros_like(batch.layer))
        result = ProbeResult()
        split_names = list(data.splits)
        from probe.probes.bounds import image_choice, images_per_forward

        hw = tuple(data.splits[split_names[0]].degraded.shape[-2:])
        self._batch, why = images_per_forward(p["batch_size"], hw, MIN_SAMPLES)
        if why and p["convention"] == "image":
            why += "; for the 'image' convention this is the HSIC minibatch: a minibatch estimate (n_batches)"
        sizes = [len(b) for b in data.splits.values()]
        used = min(sizes) if p["n_images"] is None else min(p["n_images"], min(sizes))
        bounds = {"images": image_choice(used, min(sizes), "n_images", p["n_images"]),
                  **({"batch_bound": why} if why else {})}
        matrices, matrix_flags, align, align_flags, counts = [], [], [], [], []
        names: list[str] | None = None
        for split in split_names:
            batch = data.splits[split]
            n = len(batch) if p["n_images"] is None else min(p["n_images"], len(batch))
            if n < MIN_SAMPLES:
                raise ConfigError(f"cka: split {split!r} has {n} images; CKA needs at least {MIN_SAMPLES}")
            rep_o = self._extract(model, batch.degraded[:n], layers)
            if names is None:
                names = rep_o.layers
            elif rep_o.layers != names:
                raise ConfigError(f"cka: layers captured in split {split!r} differ from the first split")
            acc = MinibatchCKA(p["kernel"], p["estimator"], p["threshold"])
            mat = _accumulate(acc, [rep_o] * len(names), names)
            matrices.append(mat.values)
            matrix_flags.append(mat.degenerate)
            counts.append((rep_o.n_samples, mat.n_batches))
            if p["alignment"]:
                other = batch.layer[:n]
                d_input = other.clamp(0, 1) if p["degradation_input"] == "black" else other
                rows, flags = [], []
                for target_images in (batch.clean[:n], d_input):
                    rep_t = self._extract(model, target_images, layers)
                    paired = MinibatchCKA(p["kernel"], p["estimator"], p["threshold"], paired=True)
                    res = _accumulate(paired, [rep_o] * len(names), names, [rep_t] * len(names), names)
                    rows.append(res.values)
                    flags.append(res.degenerate)
                align.append(np.stack(rows))
                align_flags.append(np.stack(flags))
                self._align_metrics(result, split, names, rows, flags)
        assert names is not None
        attrs = {"kernel": p["kernel"], "estimator": p["estimator"], "convention": p["convention"],
                 "threshold": float(p["threshold"]), "seed": int(p["seed"]),
                 "pixels_per_image": int(p["pixels_per_image"]), "batch_size": int(p["batch_size"]),
                 "n_samples": [int(c[0]) for c in counts], "n_batches": [int(c[1]) for c in counts], **bounds}
        depth = ("layer", np.arange(len(names)))
        coords = {"split": split_names, "layer_a": names, "layer_b": names}
        result.arrays["layer_cka"] = xr.DataArray(np.stack(matrices), dims=("split", "layer_a", "layer_b"),
                                                  coords=coords, attrs=dict(attrs), name="layer_cka")
        result.arrays["layer_cka_degenerate"] = xr.DataArray(np.stack(matrix_flags),
                                                             dims=("split", "layer_a", "layer_b"), coords=coords,
                                                             name="layer_cka_degenerate")
        if p["alignment"]:
            acoords = {"split": split_names, "target": ["clean", "degradation"], "layer": names, "depth": depth}
            result.arrays["alignment"] = xr.DataArray(
                np.stack(align), dims=("split", "target", "layer"), coords=acoords,
                attrs={**attrs, "degradation_input": p["degradation_input"]}, name="alignment")
            result.arrays["alignment_degenerate"] = xr.DataArray(
                np.stack(align_flags), dims=("split", "target", "layer"), coords=acoords,
                name="alignment_degenerate")
        return result

    @staticmethod
    def _align_metrics(result: ProbeResult, split: str, names: list[str], rows: list[np.ndarray],
                       flags: list[np.ndarray]) -> None:
        """Metric rows; NaN (non-finite features) and degenerate (constant, defined as 0) values carry a flag."""

        def flag(value: float, degenerate: bool) -> str | None:
            if not np.isfinite(value):
                return NONFINITE_FLAG
            return DEGENERATE_FLAG if degenerate else None

        clean, degradation = rows
        for depth, name in enumerate(names):
            for metric, values, bad in (("align_clean", clean, flags[0]), ("align_degradation", degradation, flags[1])):
                result.add_metric(split, metric, values[depth], flag=flag(values[depth], bool(bad[depth])),
                                  layer=name, depth=depth)
        deep = slice(len(names) - max(1, len(names) // 3), len(names))
        gap = float(np.mean(degradation[deep] - clean[deep]))
        result.add_metric(split, "align_gap_deep", gap, flag=None if np.isfinite(gap) else NONFINITE_FLAG)


# ----------------------------------------------------------------------------------------------- across models

def _match_layers(points: dict[str, list[str]], full_first: list[str], match: str
                  ) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """Labels of the compared layers, each model's module names for them, and their relative depth."""
    ids = list(points)
    if match == "name":
        common = [name for name in points[ids[0]] if all(name in points[m] for m in ids)]
        if not common:
            raise ConfigError("cross_model_cka: the models share no layer name; pass layers=[...] or "
                              "match='depth'")
        order = full_first if all(c in full_first for c in common) else points[ids[0]]
        depth = np.array([order.index(c) / max(1, len(order) - 1) for c in common])
        return common, {mid: list(common) for mid in ids}, depth
    k = min(len(v) for v in points.values())
    picked = {mid: [v[int(round(i))] for i in np.linspace(0, len(v) - 1, k)] for mid, v in points.items()}
    return [f"depth{i}" for i in range(k)], picked, np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)


def cross_model_cka(models: Mapping[str, nn.Module | Callable[[], nn.Module]], data: EvalData | Tensor, *,
                    layers: Any = None, split: str | None = None, match: str = "name", kernel: str = "linear",
                    estimator: str = "unbiased", convention: str = "image", n_images: int | None = 32,
                    batch_size: int = 32, pixels_per_image: int = 64, threshold: float = 1.0,
                    seed: int = 0) -> xr.DataArray:
    """CKA between every pair of models at matching layers, on the same inputs → ``(model_a, model_b, layer)``.

    ``models`` maps an id to a module, or to a zero-argument callable that loads it (``functools.partial(
    load_model, run_dir)``): such models are loaded one at a time and dropped once their reduced
    representations are taken, so a whole catalog fits in memory. Inputs: the degraded images of ``split``
    (default: the first) of an :class:`EvalData`, or an ``(N, C, H, W)`` tensor. ``layers``: a list of names
    for every model, or ``{id: [names]}``, default every probe point. ``match="name"`` compares layers of the
    same name (all models of one family); ``match="depth"`` compares ``k`` layers (k = the shortest list) at
    evenly spaced relative depths of each model's list (families against each other), labelled ``depth0…`` with
    coordinate ``layer_name`` ``(model_a, layer)``. Coordinate ``depth`` is the relative depth; attrs record the
    kernel, estimator, convention, sample count and ``n_degenerate`` (pairs defined as 0)::

        cka = cross_model_cka({"n4": m4, "n64": m64}, data, split="ood")
        cka.sel(layer="hook_body").values           # (2, 2), diagonal 1
    """
    choice_param("cka", "match", match, ("name", "depth"))
    choice_param("cka", "kernel", kernel, KERNELS)
    choice_param("cka", "estimator", estimator, ESTIMATORS)
    choice_param("cka", "convention", convention, CONVENTIONS)
    number_param("cka", "threshold", threshold, positive=True)
    if not models:
        raise ConfigError("cross_model_cka needs at least one model")
    if isinstance(data, EvalData):
        name = split if split is not None else next(iter(data.splits))
        if name not in data.splits:
            raise ConfigError(f"unknown split {name!r}; available: {', '.join(data.splits)}")
        images = data.splits[name].degraded
    elif isinstance(data, Tensor):
        images, name = data, None
    else:
        raise ConfigError(f"data must be EvalData or an image tensor, got {type(data).__name__}")
    n = images.shape[0] if n_images is None else min(int(n_images), images.shape[0])
    images = images[:n]
    ids = list(models)
    reps: dict[str, Representations] = {}
    points: dict[str, list[str]] = {}
    full_first: list[str] = []
    for mid in ids:
        model = models[mid] if isinstance(models[mid], nn.Module) else _load(models[mid], mid)
        wanted = layers.get(mid) if isinstance(layers, Mapping) else layers
        points[mid] = resolve_layers(model, names_param("cka", "layers", wanted))
        if mid == ids[0]:
            full_first = available_layers(model)
        reps[mid] = extract_representations(model, images, points[mid], convention=convention,
                                            batch_size=batch_size, pixels_per_image=pixels_per_image, seed=seed)
        del model  # a model loaded here is freed before the next one is loaded
    labels, per_model, depth = _match_layers(points, full_first, match)
    values = np.zeros((len(ids), len(ids), len(labels)))
    n_degenerate = 0
    for k in range(len(labels)):
        acc = MinibatchCKA(kernel, estimator, threshold)
        res = _accumulate(acc, [reps[mid] for mid in ids], [per_model[mid][k] for mid in ids])
        values[:, :, k] = res.values
        n_degenerate += int(res.degenerate.sum())
    coords: dict[str, Any] = {"model_a": ids, "model_b": ids, "layer": labels, "depth": ("layer", depth)}
    if match == "depth":
        coords["layer_name"] = (("model_a", "layer"), np.array([per_model[mid] for mid in ids], dtype=object))
    attrs = {"kernel": kernel, "estimator": estimator, "convention": convention, "match": match,
             "threshold": float(threshold), "seed": int(seed), "n_samples": int(reps[ids[0]].n_samples),
             "batch_size": int(batch_size), "pixels_per_image": int(pixels_per_image),
             "n_degenerate": n_degenerate, "split": name or ""}
    return xr.DataArray(values, dims=("model_a", "model_b", "layer"), coords=coords, attrs=attrs,
                        name="cross_model_cka")


def _load(factory: Any, mid: str) -> nn.Module:
    if not callable(factory):
        raise ConfigError(f"model {mid!r} must be an nn.Module or a callable returning one")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"loader for model {mid!r} returned {type(model).__name__}, not an nn.Module")
    return model
