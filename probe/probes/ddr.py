"""The ``ddr`` probe (deep degradation representation): do pooled deep features cluster by degradation or by
background content?

The first ``n_backgrounds`` clean images of the evaluation set are each degraded by every degradation in
``degradations`` (``samples_per_pair`` independent draws each, seeded), optionally plus the clean images
themselves (label ``"clean"``). Every probe point's features are globally average-pooled per image
(``(samples, C)``), standardised per channel when ``standardize`` (constant channels → 0), and scored with
scikit-learn's Calinski–Harabasz index and silhouette (Euclidean) twice: grouped by degradation label and
grouped by background. A network that models the degradation separates by degradation (high silhouette by
degradation, low by background); one that reconstructs content does the opposite. A representation with no
variance at all scores 0 for both (not sklearn's CH = 1 convention for zero dispersion).

Arrays:

* ``cluster_scores`` ``(layer, label, score)``: label ∈ {degradation, background},
  score ∈ {calinski_harabasz, silhouette};
* ``embedding`` ``(layer, sample, component)``: 2-D PCA (default; coordinate ``explained_variance_ratio``
  ``(layer, component)``) or t-SNE (seeded, perplexity min(``perplexity``, (samples − 1)/3)) of the same
  features, with sample coordinates ``degradation`` (label), ``background`` (index) and ``draw`` — ready for a
  scatter coloured either way.

Metric rows (split ``"all"``, with ``layer`` and ``depth``): ``ch_degradation``, ``ch_background``,
``silhouette_degradation``, ``silhouette_background`` and ``ddr_score`` = silhouette by degradation − by
background::

    from probe.probes import PROBES
    result = PROBES.get("ddr")(n_backgrounds=6).run(model, data)
    result.arrays["cluster_scores"].sel(score="silhouette", label="degradation")    # per layer
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from probe.errors import ConfigError
from probe.methods.capture import collect_features, evaluating, resolve_layers
from probe.methods.reducers import pool
from probe.models.anchors import feed
from probe.probes._validate import choice_param, int_param, names_param, number_param
from probe.probes.base import EvalData, Probe, ProbeResult

DEFAULT_DEGRADATIONS: dict[str, dict[str, Any]] = {
    "rain:small": {"type": "rain", "preset": "small"},
    "rain:medium": {"type": "rain", "preset": "medium"},
    "rain:large": {"type": "rain", "preset": "large"},
    "noise:medium": {"type": "noise", "preset": "medium"},
    "blur:medium": {"type": "blur", "preset": "medium"},
}
LABELS = ("degradation", "background")
SCORES = ("calinski_harabasz", "silhouette")

__all__ = ["DDR", "DEFAULT_DEGRADATIONS", "cluster_scores", "resolve_degradations"]


def resolve_degradations(spec: Any) -> dict[str, Any]:
    """``{label: built degradation}`` from None (the defaults that exist in the registry), a list of specs
    (labels ``type:preset``, or ``type#i``) or a ``{label: spec}`` table. Bad specs raise ConfigError."""
    from probe.data.degradations import DEGRADATIONS, make_degradation

    if spec is None:
        out = {}
        for label, table in DEFAULT_DEGRADATIONS.items():
            try:
                DEGRADATIONS.get(table["type"])
            except ConfigError:
                continue  # that degradation type is not available: skip it
            out[label] = make_degradation(table)
        return out
    if isinstance(spec, Mapping):
        items = [(str(label), table) for label, table in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        items = []
        for i, table in enumerate(spec):
            if not isinstance(table, Mapping):
                raise ConfigError(f"ddr: 'degradations' entries must be tables with a 'type', got {table!r}")
            label = f"{table.get('type')}:{table['preset']}" if table.get("preset") else f"{table.get('type')}#{i}"
            if any(label == existing for existing, _ in items):
                label = f"{label}#{i}"
            items.append((label, table))
    else:
        raise ConfigError(f"ddr: 'degradations' must be null, a list of specs or a {{label: spec}} table, "
                          f"got {spec!r}")
    out = {label: make_degradation(table) for label, table in items}
    if "clean" in out:
        raise ConfigError("ddr: 'clean' is reserved for include_clean; rename that degradation")
    return out


def cluster_scores(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Calinski–Harabasz, silhouette) of ``features`` ``(S, C)`` grouped by ``labels``; (0, 0) when the
    features have no variance; NaN when the grouping is not scorable (one group, or every sample alone).
    Groups without any spread get scikit-learn's CH convention (1.0)::

        x = np.r_[np.zeros((4, 2)), np.ones((4, 2))] + 0.1 * np.arange(8)[:, None] % 0.3
        cluster_scores(x, np.repeat([0, 1], 4))       # (large CH, silhouette near 1)
    """
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    x = np.asarray(features, dtype=np.float64)
    n_groups = len(np.unique(labels))
    if n_groups < 2 or n_groups > len(x) - 1 or not np.isfinite(x).all():
        return float("nan"), float("nan")  # undefined, or broken (non-finite) features: never a number
    if not np.any(x.var(axis=0) > 0):
        return 0.0, 0.0
    with np.errstate(divide="ignore"):
        ch = float(calinski_harabasz_score(x, labels))
    return ch, float(silhouette_score(x, labels, metric="euclidean"))


NONFINITE_FLAG = "non-finite features (NaN/inf activations at this layer)"


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (x - x.mean(axis=0)) / safe, 0.0)


def _embed(x: np.ndarray, method: str, seed: int, perplexity: float) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    if not np.isfinite(x).all():
        return np.full((n, 2), np.nan), np.full(2, np.nan)
    if x.shape[1] < 2:
        x = np.concatenate([x, np.zeros((n, 2 - x.shape[1]))], axis=1)
    if not np.any(x.var(axis=0) > 0):
        return np.zeros((n, 2)), np.full(2, np.nan)
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, svd_solver="full", random_state=seed)
        return pca.fit_transform(x), pca.explained_variance_ratio_
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), random_state=seed, init="pca")
    return tsne.fit_transform(x), np.full(2, np.nan)


class DDR(Probe):
    """Cluster separation of pooled deep features by degradation vs by background, and a 2-D embedding."""

    name = "ddr"
    description = "deep degradation representation: do pooled features cluster by degradation or by content"
    defaults = {
        "degradations": None,    # list of specs or {label: spec}; default rain small/medium/large, noise, blur
        "n_backgrounds": 8,      # first n clean images of the evaluation set
        "samples_per_pair": 1,   # independent degradation draws per (degradation, background)
        "include_clean": False,  # add the clean images as label "clean"
        "layers": None,          # default: every probe point
        "batch_size": 16,
        "standardize": True,     # z-score each pooled channel before scoring
        "embedding": "pca",      # pca | tsne
        "perplexity": 30.0,      # t-SNE (capped at (samples - 1) / 3)
        "seed": 0,
    }

    def validate(self) -> None:
        p = self.params
        if p["degradations"] is not None:
            self._degradations = resolve_degradations(p["degradations"])
            if len(self._degradations) + bool(p["include_clean"]) < 2:
                raise ConfigError("ddr: 'degradations' needs at least 2 labels (counting include_clean)")
        int_param(self.name, "n_backgrounds", p["n_backgrounds"], 2)
        int_param(self.name, "samples_per_pair", p["samples_per_pair"], 1)
        int_param(self.name, "batch_size", p["batch_size"], 1)
        int_param(self.name, "seed", p["seed"], 0)
        names_param(self.name, "layers", p["layers"])
        choice_param(self.name, "embedding", p["embedding"], ("pca", "tsne"))
        number_param(self.name, "perplexity", p["perplexity"], positive=True)
        for key in ("include_clean", "standardize"):
            if not isinstance(p[key], bool):
                raise ConfigError(f"ddr: {key!r} must be true or false, got {p[key]!r}")

    def inputs(self, data: EvalData) -> tuple[torch.Tensor, list[str], np.ndarray, np.ndarray]:
        """The probe's input images ``(S, 3, H, W)`` with degradation labels, background indices and draws."""
        p = self.params
        degradations = self._degradations if p["degradations"] is not None else resolve_degradations(None)
        if len(degradations) + bool(p["include_clean"]) < 2:
            raise ConfigError("ddr: fewer than 2 degradation labels are available")
        clean = data.clean
        if clean.shape[0] < p["n_backgrounds"]:
            raise ConfigError(f"ddr: 'n_backgrounds' is {p['n_backgrounds']} but the evaluation set has "
                              f"{clean.shape[0]} images")
        backgrounds = clean[: p["n_backgrounds"]]
        images, deg_labels, bg, draw = [], [], [], []
        n_bg = backgrounds.shape[0]
        if p["include_clean"]:
            images.append(backgrounds)
            deg_labels += ["clean"] * n_bg
            bg.append(np.arange(n_bg))
            draw.append(np.zeros(n_bg, dtype=int))
        for d_index, (label, deg) in enumerate(degradations.items()):
            for r in range(p["samples_per_pair"]):
                gen = torch.Generator().manual_seed(int(p["seed"]) * 1_000_003 + 1000 * d_index + r)
                # synthesised on the CPU: the same inputs (and results) whichever device the data lives on
                images.append(deg.apply(backgrounds.cpu(), gen).degraded.to(backgrounds.device))
                deg_labels += [label] * n_bg
                bg.append(np.arange(n_bg))
                draw.append(np.full(n_bg, r))
        return torch.cat(images), deg_labels, np.concatenate(bg), np.concatenate(draw)

    def run(self, model: nn.Module, data: EvalData) -> ProbeResult:
        p = self.params
        layers = resolve_layers(model, names_param(self.name, "layers", p["layers"]))
        images, deg_labels, bg, draw = self.inputs(data)
        # an oracle anchor learns every background (indices on the backgrounds' own device)
        feed(model, images, data.clean[torch.as_tensor(bg, device=data.clean.device)])
        from probe.probes.bounds import image_choice, images_per_forward

        batch, why = images_per_forward(p["batch_size"], tuple(images.shape[-2:]))
        with evaluating(model):
            feats = collect_features(model, images, layers, batch, reducer=pool)
        names = list(feats)
        scores = np.full((len(names), len(LABELS), len(SCORES)), np.nan)
        embedding = np.zeros((len(names), len(deg_labels), 2))
        explained = np.full((len(names), 2), np.nan)
        deg_arr = np.array(deg_labels)
        result = ProbeResult()
        for li, name in enumerate(names):
            x = feats[name].double().numpy()
            finite = bool(np.isfinite(x).all())
            if p["standardize"] and finite:
                x = _standardize(x)
            for gi, groups in enumerate((deg_arr, bg)):
                scores[li, gi] = cluster_scores(x, groups)
            embedding[li], explained[li] = _embed(x, p["embedding"], int(p["seed"]), float(p["perplexity"]))
            rows = {"ch_degradation": scores[li, 0, 0], "ch_background": scores[li, 1, 0],
                    "silhouette_degradation": scores[li, 0, 1], "silhouette_background": scores[li, 1, 1],
                    "ddr_score": scores[li, 0, 1] - scores[li, 1, 1]}
            for metric, value in rows.items():
                if np.isfinite(value) or not finite:
                    result.add_metric("all", metric, float(value), layer=name, depth=li,
                                      flag=None if finite else NONFINITE_FLAG)
        attrs = {"standardize": bool(p["standardize"]), "n_backgrounds": int(p["n_backgrounds"]),
                 "samples_per_pair": int(p["samples_per_pair"]), "seed": int(p["seed"]),
                 "degradations": sorted(set(deg_labels), key=deg_labels.index),
                 "images": image_choice(int(p["n_backgrounds"]), int(data.clean.shape[0]), "n_backgrounds",
                                        p["n_backgrounds"]).replace(" per split", " (backgrounds)"),
                 **({"batch_bound": why} if why else {})}
        depth = ("layer", np.arange(len(names)))
        result.arrays["cluster_scores"] = xr.DataArray(
            scores, dims=("layer", "label", "score"),
            coords={"layer": names, "label": list(LABELS), "score": list(SCORES), "depth": depth},
            attrs=attrs, name="cluster_scores")
        result.arrays["embedding"] = xr.DataArray(
            embedding, dims=("layer", "sample", "component"),
            coords={"layer": names, "sample": np.arange(len(deg_labels)), "component": ["c1", "c2"],
                    "depth": depth, "degradation": ("sample", deg_arr), "background": ("sample", bg),
                    "draw": ("sample", draw), "explained_variance_ratio": (("layer", "component"), explained)},
            attrs={**attrs, "method": p["embedding"],
                   "perplexity": float(p["perplexity"]) if p["embedding"] == "tsne" else 0.0},
            name="embedding")
        return result
