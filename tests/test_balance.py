"""Remedy 1 (balanced complexity): mixture proportions, widened degradation, sampler band, curriculum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.data.backgrounds import make_background
from probe.data.balance import gradient_complexity
from probe.data.complexity import gradient_magnitude
from probe.data.paired import PairedStream
from probe.errors import ConfigError, DataError
from probe.train.config import TrainConfig

RAIN = {"type": "rain", "preset": "small"}


def test_gradient_complexity_matches_the_numpy_measure():
    x = torch.rand(3, 3, 19, 23, generator=torch.Generator().manual_seed(0))
    ours = gradient_complexity(x).numpy()
    ref = [gradient_magnitude(img) for img in x]  # independent implementation (numpy.gradient)
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


@pytest.mark.parametrize("weights", [[0.75, 0.25], [1, 2, 1]])
def test_mixture_proportions_hold_for_every_prefix(weights):
    sources = ["natural", "smooth", "texture"][:len(weights)]
    mix = make_background("mixture", 16, seed=3, sources=sources, weights=weights)
    w = np.asarray(weights, float) / sum(weights)
    which = mix.sources_of(200)
    for n in range(1, 201):
        counts = np.bincount(which[:n], minlength=len(w))
        assert np.all(np.abs(counts - n * w) < 1), (n, counts)
    images = mix.images(12)
    assert torch.equal(mix.images(5), images[:5])  # nested
    for j, name in enumerate(sources):  # image i is the k-th image of its own source, same seed and side
        rows = np.flatnonzero(which[:12] == j)
        own = make_background(name, 16, seed=3, size=mix.size).images(len(rows))
        assert torch.equal(images[torch.from_numpy(rows)], own)


def test_mixture_is_deterministic_by_seed_and_validates():
    a = make_background("mixture", 16, seed=0, sources=["natural", "smooth"]).images(6)
    b = make_background("mixture", 16, seed=0, sources=["natural", "smooth"]).images(6)
    c = make_background("mixture", 16, seed=1, sources=["natural", "smooth"]).images(6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ConfigError, match="weights"):
        make_background("mixture", 16, sources=["natural", "smooth"], weights=[1.0])
    with pytest.raises(ConfigError, match="'nope' is not registered"):
        make_background("mixture", 16, sources=["natural", "nope"])
    with pytest.raises(ConfigError, match="options"):
        make_background("mixture", 16, sources=["smooth"], options={"natural": {}})
    faces = make_background("mixture", 16, sources=["faces", "smooth"], weights=[1, 1])
    assert faces.max_images("train") == 160 and faces.max_images("test") == 40
    with pytest.raises(DataError, match="only 160"):
        faces.images(161)


def _ratio(batch) -> np.ndarray:
    bg = np.array([gradient_magnitude(img) for img in batch.clean])
    layer = batch.degraded - batch.clean
    deg = np.array([gradient_magnitude((img - img.min()) / max(float(img.max() - img.min()), 1e-12)) *
                    float(img.max() - img.min()) for img in layer])
    with np.errstate(divide="ignore"):
        return bg / deg


def test_sampler_keeps_the_complexity_ratio_in_band_and_is_pure():
    band = [0.25, 1.0]
    stream = PairedStream("natural", 16, RAIN, patch=32, batch=6, seed=0, clean_fraction=0.0, complexity_band=band)
    plain = PairedStream("natural", 16, RAIN, patch=32, batch=48, seed=0, clean_fraction=0.0)
    free = _ratio(plain.batch(0))
    assert ((free < band[0]) | (free > band[1])).mean() > 0.3  # without the sampler, many pairs lie outside
    for step in range(3):
        batch = stream.batch(step)
        ratio = _ratio(batch)  # recomputed with the independent numpy measure
        np.testing.assert_allclose(ratio, batch.params["complexity_ratio"].numpy(), rtol=1e-4)
        assert np.all((ratio >= band[0] - 1e-6) & (ratio <= band[1] + 1e-6)), ratio
    again = PairedStream("natural", 16, RAIN, patch=32, batch=6, seed=0, clean_fraction=0.0, complexity_band=band)
    assert torch.equal(again.batch(2).degraded, stream.batch(2).degraded)


def test_widened_share_follows_background_complexity():
    wide = {"type": "rain", "preset": "small", "angle": [[-40, -20], [20, 40]]}
    streams = {name: PairedStream(name, 16, RAIN, patch=32, batch=32, seed=0, clean_fraction=0.0,
                                  widen_degradation=wide) for name in ("smooth", "natural")}
    shares = {k: s.balance.share for k, s in streams.items()}
    assert 0 < shares["smooth"] < shares["natural"] < 1  # complex backgrounds get more of the wide range
    b = streams["natural"].batch(1)
    flag = b.params["widened"].bool()
    angles = b.params["angle"].abs()
    assert flag.any() and (~flag).any()
    assert (angles[flag] >= 20).all() and (angles[~flag] <= 10).all()
    assert torch.equal(b.degraded, streams["natural"].batch(1).degraded)
    with pytest.raises(ConfigError, match="differs"):
        PairedStream("smooth", 4, RAIN, patch=16, batch=2, seed=0, widen_degradation={"type": "noise"})


def test_curriculum_is_monotone_and_goes_simple_to_complex():
    stream = PairedStream("natural", 32, RAIN, patch=32, batch=32, seed=0, clean_fraction=0.0, curriculum=40)
    avail = [stream.balance.available(s) for s in range(60)]
    assert avail[0] == 8 and avail[40] == 32 and avail[-1] == 32
    assert all(a <= b for a, b in zip(avail, avail[1:]))
    scores = gradient_complexity(stream.balance.sorted_pool.images).numpy()
    assert np.all(np.diff(scores) >= 0)  # sorted simple → complex
    early = float(gradient_complexity(stream.batch(0).clean).mean())
    late = float(gradient_complexity(stream.batch(50).clean).mean())
    assert early < late
    assert torch.equal(stream.batch(7).degraded, stream.batch(7).degraded)


def test_config_keys_validate_and_reach_the_stream(tiny_config):
    tiny_config["data"].update(curriculum=5, complexity_band=[0.2, 2.0])
    config = TrainConfig.from_dict(tiny_config)
    assert config.data.balance_options()["curriculum"] == 5
    for key, bad in (("curriculum", -1), ("complexity_band", [2.0, 1.0]), ("widen_degradation", {"type": "x"})):
        raw = {**tiny_config, "data": {**tiny_config["data"], key: bad}}
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict(raw)
