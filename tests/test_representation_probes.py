"""activations / cka / ddr on small models with HookPoints and a tiny hand-made EvalData."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe.data.degradations import make_degradation
from probe.data.types import DegradedBatch
from probe.errors import ConfigError
from probe.methods.capture import collect_features, iterate_features
from probe.models import FAMILIES, build
from probe.models.base import HookPoint
from probe.probes import PROBES
from probe.probes.base import EvalData
from probe.probes.cka import cross_model_cka

SIZE = 32


def backgrounds(n: int, seed: int) -> torch.Tensor:
    """Smooth, varied backgrounds: 4×4 random colours upsampled."""
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def data() -> EvalData:
    clean = backgrounds(8, 0)
    rain_id = make_degradation({"type": "rain", "preset": "medium"})
    rain_ood = make_degradation({"type": "rain", "preset": "large"})
    zeros, mask = torch.zeros_like(clean), torch.zeros(8, 1, SIZE, SIZE)
    splits = {
        "id": rain_id.apply(clean, torch.Generator().manual_seed(1)),
        "ood": rain_ood.apply(clean, torch.Generator().manual_seed(2)),
        "clean": DegradedBatch(clean.clone(), clean, zeros, mask, mask.clone()),
    }
    return EvalData(splits, {"id": rain_id, "ood": rain_ood, "clean": None}, alt_clean=backgrounds(8, 5), seed=3)


class Oracle(nn.Module):
    """hook_input = the image; hook_high = a high-pass of it (rain streaks survive, smooth content does not);
    hook_relu = ReLU features with one channel forced dead; hook_out = a 3-channel output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hook_input = HookPoint()
        self.hook_high = HookPoint()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        with torch.no_grad():
            self.conv.bias[1:] = 0.5
            self.conv.bias[0] = -100.0  # dead channel after the ReLU
        self.relu = nn.ReLU(inplace=True)
        self.hook_relu = HookPoint()
        self.out = nn.Conv2d(6, 3, 1)
        self.hook_out = HookPoint()

    def forward(self, x):
        x = self.hook_input(x)
        high = self.hook_high(x - F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False))
        feat = self.hook_relu(self.relu(self.conv(torch.cat([x[:, :1], high[:, :2]], 1))))
        return self.hook_out(self.out(feat))


class Energy(nn.Module):
    """hook_input = the image (pooled: its mean colour); hook_energy = |high-pass| (pooled: detail energy)."""

    def __init__(self):
        super().__init__()
        self.hook_input = HookPoint()
        self.hook_energy = HookPoint()

    def forward(self, x):
        x = self.hook_input(x)
        return self.hook_energy((x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)).abs())


class Ignorer(nn.Module):
    """Ignores its input: every probe point is the same constant map."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.2, 0.5, 0.7]))
        self.hook_a = HookPoint()
        self.hook_b = HookPoint()

    def forward(self, x):
        const = self.bias.view(1, 3, 1, 1).expand_as(x).contiguous()
        return self.hook_b(torch.relu(self.hook_a(const)))


# ----------------------------------------------------------------------------------------------- cka


def test_cka_probe_layer_matrix_and_alignment(data):
    result = PROBES.get("cka")(n_images=8, batch_size=8).run(Oracle(), data)
    layers = ["hook_input", "hook_high", "hook_relu", "hook_out"]
    m = result.arrays["layer_cka"]
    assert m.dims == ("split", "layer_a", "layer_b")
    assert list(m.split.values) == ["id", "ood", "clean"] and list(m.layer_a.values) == layers
    np.testing.assert_allclose(np.diagonal(m.values, axis1=1, axis2=2), 1.0, atol=1e-9)
    np.testing.assert_allclose(m.values, np.swapaxes(m.values, 1, 2), atol=1e-12)
    assert np.all(np.abs(m.values) <= 1.0) and not np.isnan(m.values).any()
    assert m.attrs["convention"] == "image" and m.attrs["n_samples"] == [8, 8, 8]
    a = result.arrays["alignment"]
    assert a.dims == ("split", "target", "layer") and list(a.target.values) == ["clean", "degradation"]
    # the shortcut signature, by construction: the image layer follows the background, the high-pass the rain
    for split in ("id", "ood"):
        ident = a.sel(split=split, layer="hook_input")
        high = a.sel(split=split, layer="hook_high")
        assert ident.sel(target="clean") > ident.sel(target="degradation")
        assert high.sel(target="degradation") > high.sel(target="clean")
    # the clean split has no degradation: its degradation input is constant → defined as 0, flagged, no NaN
    flags = result.arrays["alignment_degenerate"]
    assert flags.sel(split="clean", target="degradation").all()
    assert (a.sel(split="clean", target="degradation") == 0).all()
    np.testing.assert_allclose(a.sel(split="clean", target="clean"), 1.0, atol=1e-9)  # O == B there
    metrics = {(r["split"], r["metric"], r.get("layer")) for r in result.metrics}
    assert ("ood", "align_degradation", "hook_high") in metrics and ("id", "align_gap_deep", None) in metrics


def test_cka_probe_conventions_minibatches_and_ignorer(data):
    probe_cls = PROBES.get("cka")
    for convention in ("pooled", "pixels"):
        res = probe_cls(convention=convention, n_images=8, batch_size=4, pixels_per_image=16,
                        splits=["ood"]).run(Oracle(), data)
        m = res.arrays["layer_cka"].sel(split="ood")
        np.testing.assert_allclose(np.diag(m.values)[1:], 1.0, atol=1e-9)
        assert res.arrays["layer_cka"].attrs["n_samples"] == [8 if convention == "pooled" else 128]
    rbf = probe_cls(kernel="rbf", estimator="biased", n_images=8, batch_size=4, splits=["id"]).run(Oracle(), data)
    assert rbf.arrays["layer_cka"].attrs["n_batches"] == [2]
    assert rbf.arrays["layer_cka"].sel(layer_a="hook_input", layer_b="hook_input").item() == pytest.approx(1.0)
    ignorer = probe_cls(n_images=8, splits=["id"]).run(Ignorer(), data)
    assert ignorer.arrays["layer_cka_degenerate"].all() and (ignorer.arrays["layer_cka"] == 0).all()
    assert not np.isnan(ignorer.arrays["alignment"].values).any()
    with pytest.raises(ConfigError, match="convention"):
        probe_cls(convention="voxels")
    with pytest.raises(ConfigError, match="n_images"):
        probe_cls(n_images=3)


def test_cross_model_cka_catalog_and_depth_matching(data):
    a, b = Oracle(), Oracle()
    with torch.no_grad():
        b.out.weight.mul_(-2.0)  # only the output differs (CKA is scale/sign invariant → still 1)
        b.conv.weight.add_(torch.randn_like(b.conv.weight))
    loads = []

    def loader():
        loads.append(1)
        return Oracle()

    out = cross_model_cka({"a": a, "b": b, "lazy": loader}, data, split="id", n_images=8, batch_size=4)
    assert out.dims == ("model_a", "model_b", "layer") and out.shape == (3, 3, 4)
    assert loads == [1]
    np.testing.assert_allclose(out.sel(model_a="a", model_b="lazy"), 1.0, atol=1e-9)  # the same network
    np.testing.assert_allclose(out.values, np.swapaxes(out.values, 0, 1), atol=1e-12)
    assert out.sel(model_a="a", model_b="b", layer="hook_input").item() == pytest.approx(1.0)
    assert out.sel(model_a="a", model_b="b", layer="hook_relu").item() < 0.999
    fam = cross_model_cka({"resnet": functools.partial(build, "resnet"), "unet": functools.partial(build, "unet")},
                          data.splits["ood"].degraded, match="depth", n_images=4, convention="pooled")
    k = fam.sizes["layer"]
    assert fam.coords["layer_name"].shape == (2, k) and fam.depth.values[-1] == 1.0
    assert fam.coords["layer_name"].values[0, -1] == "hook_output"
    with pytest.raises(ConfigError, match="share no layer"):
        cross_model_cka({"a": a, "r": build("resnet")}, data)


# ----------------------------------------------------------------------------------------------- activations


def test_activations_statistics_separability_sensitivity(data):
    result = PROBES.get("activations")(n_images=8, batch_size=3, pixels_per_class=32).run(Oracle(), data)
    arr = result.arrays
    for key in ("mean", "std", "zero_fraction", "dead_fraction", "fisher_ratio", "probe_accuracy",
                "sensitivity_ratio"):
        assert arr[key].dims == ("split", "layer"), key
    images = data.splits["id"].degraded
    # statistics streamed over batches of 3 equal those of all the images at once
    assert arr["mean"].sel(split="id", layer="hook_input") == pytest.approx(float(images.mean()), rel=1e-6)
    assert arr["std"].sel(split="id", layer="hook_input") == pytest.approx(float(images.std(unbiased=False)),
                                                                           rel=1e-5)
    np.testing.assert_allclose(arr["channel_mean"].sel(split="id", layer="hook_input")[:3],
                               images.mean(dim=(0, 2, 3)).numpy(), rtol=1e-5)
    assert arr["channel_mean"].n_channels.values.tolist() == [3, 3, 6, 3]
    assert np.isnan(arr["channel_std"].sel(layer="hook_out").values[:, 3:]).all()
    assert arr["dead_fraction"].sel(split="id", layer="hook_relu") == pytest.approx(1 / 6)
    assert arr["dead_fraction"].sel(split="id", layer="hook_input") == 0
    assert arr["zero_fraction"].sel(split="id", layer="hook_relu") >= 1 / 6
    # rain pixels are brighter and sharper than the smooth background: linearly separable at the input
    assert (arr["probe_accuracy"].sel(split=["id", "ood"], layer=["hook_input", "hook_high"]) > 0.7).all()
    assert (arr["fisher_ratio"].sel(split=["id", "ood"], layer="hook_input") > 1.0).all()
    assert np.isnan(arr["probe_accuracy"].sel(split="clean")).all()  # no mask pixels in a clean split
    # at the identity probe point, the layer's sensitivity is the input's
    np.testing.assert_allclose(arr["sensitivity"].sel(split="id", layer="hook_input").values,
                               arr["input_sensitivity"].sel(split="id").values, rtol=1e-6)
    # the high-pass layer follows the rain more than the content, relative to the identity layer
    ratio = arr["sensitivity_ratio"].sel(split="id")
    assert ratio.sel(layer="hook_high") > 2 * ratio.sel(layer="hook_input")
    assert np.isnan(arr["sensitivity"].sel(split="clean", change="degradation")).all()  # nothing to resample
    rows = [r for r in result.metrics if r["metric"] == "dead_fraction" and r["layer"] == "hook_relu"]
    assert len(rows) == 3 and rows[0]["depth"] == 2
    ignored = PROBES.get("activations")(n_images=4, splits=["id"]).run(Ignorer(), data).arrays
    assert (ignored["sensitivity"] == 0).all() and (ignored["channel_std"].sel(channel=[0, 1, 2]) == 0).all()
    assert ignored["probe_accuracy"].sel(layer="hook_a").item() == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------- ddr


def test_ddr_clusters_embedding_and_ignorer(data):
    result = PROBES.get("ddr")(n_backgrounds=6, samples_per_pair=1).run(Oracle(), data)
    scores = result.arrays["cluster_scores"]
    assert scores.dims == ("layer", "label", "score")
    labels = scores.attrs["degradations"]
    assert labels == ["rain:small", "rain:medium", "rain:large", "noise:medium", "blur:medium"]
    sil = scores.sel(score="silhouette")
    assert ((sil >= -1) & (sil <= 1)).all() and (scores.sel(score="calinski_harabasz") > 0).all()
    emb = result.arrays["embedding"]
    assert emb.dims == ("layer", "sample", "component") and emb.shape == (4, 30, 2)
    assert emb.degradation.values.tolist()[:7] == ["rain:small"] * 6 + ["rain:medium"]
    assert emb.background.values.tolist()[:7] == [0, 1, 2, 3, 4, 5, 0]
    assert np.isfinite(emb.values).all() and emb.explained_variance_ratio.values[0, 0] > 0.3
    again = PROBES.get("ddr")(n_backgrounds=6, samples_per_pair=1).run(Oracle(), data)
    np.testing.assert_array_equal(again.arrays["embedding"].values, emb.values)  # seeded


def test_ddr_separates_content_from_degradation_features(data):
    # noise and blur keep the mean colour: pooled images group by background; pooled detail energy groups by
    # degradation (noise adds detail, blur removes it)
    specs = {"noise": {"type": "noise", "preset": "medium"}, "blur": {"type": "blur", "preset": "large"}}
    res = PROBES.get("ddr")(n_backgrounds=8, samples_per_pair=2, degradations=specs).run(Energy(), data)
    sil = res.arrays["cluster_scores"].sel(score="silhouette")
    assert sil.sel(layer="hook_input", label="background") > 0.5
    assert sil.sel(layer="hook_input", label="degradation") < 0.2
    assert sil.sel(layer="hook_energy", label="degradation") > 0.5
    assert sil.sel(layer="hook_energy", label="background") < 0.2
    ddr = {r["layer"]: r["value"] for r in res.metrics if r["metric"] == "ddr_score"}
    assert ddr["hook_energy"] > 0.3 > -0.3 > ddr["hook_input"]
    ignored = PROBES.get("ddr")(n_backgrounds=4, degradations=[{"type": "rain", "preset": "small"},
                                                               {"type": "noise"}], include_clean=True,
                                embedding="tsne").run(Ignorer(), data)
    assert (ignored.arrays["cluster_scores"] == 0).all()
    assert ignored.arrays["embedding"].attrs["degradations"] == ["clean", "rain:small", "noise#1"]
    with pytest.raises(ConfigError):
        PROBES.get("ddr")(degradations=[{"type": "rain", "preset": "tiny"}, {"type": "noise"}])


def test_results_are_storable(data):
    from probe.store.codec import prepare_array, prepare_metrics

    probes = [PROBES.get("cka")(n_images=4, splits=["id"]), PROBES.get("activations")(n_images=4, splits=["id"]),
              PROBES.get("ddr")(n_backgrounds=2, degradations=[{"type": "rain"}, {"type": "noise"}])]
    for probe in probes:
        result = probe.run(Oracle(), data)
        prepare_metrics(result.metrics)
        for name, array in result.arrays.items():
            prepare_array(name, array)


# ----------------------------------------------------------------------------------------------- families


@pytest.mark.parametrize("family", [f for f in FAMILIES.names() if f != "external"])
def test_every_family_capture_and_cka(family, data):
    model = build(family, size="tiny").eval()
    points = model.probe_points()
    images = data.splits["ood"].degraded[:4, :, :24, :20]  # an odd size on purpose
    whole = collect_features(model, images, None, batch_size=4)
    assert list(whole) == points  # every probe point fires once, in forward order
    streamed = list(iterate_features(model, images, None, batch_size=2))
    for name in points:
        torch.testing.assert_close(torch.cat([b[name] for b in streamed]), whole[name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(whole["hook_output"], model(images))
    res = PROBES.get("cka")(n_images=4, batch_size=4, splits=["ood"]).run(model, data)
    m = res.arrays["layer_cka"].sel(split="ood")
    assert list(m.layer_a.values) == points
    ok = ~res.arrays["layer_cka_degenerate"].sel(split="ood").values
    np.testing.assert_allclose(np.diag(m.values)[np.diag(ok)], 1.0, atol=1e-9)
    assert not np.isnan(res.arrays["alignment"].values).any()
