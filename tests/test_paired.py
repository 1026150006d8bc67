"""Paired training stream (stateless, resumable, clean share) and the fixed evaluation sets."""

from __future__ import annotations

import math

import pytest
import torch

from probe.data.backgrounds import make_background
from probe.data.paired import PairedStream, evaluation_set
from probe.errors import ConfigError

RAIN = {"type": "rain", "preset": "small"}


def stream(**kw) -> PairedStream:
    args = {"background": "smooth", "n_backgrounds": 3, "degradation": RAIN, "patch": 16, "batch": 6, "seed": 0}
    args.update(kw)
    return PairedStream(**args)


def test_same_seed_and_step_give_bit_identical_batches_across_instances():
    a, b = stream(), stream()
    x, y = a.batch(7), b.batch(7)
    for name in ("degraded", "clean", "layer", "mask", "soft_mask"):
        assert torch.equal(getattr(x, name), getattr(y, name))
    assert x.params.keys() == y.params.keys()
    assert all(torch.equal(x.params[k].nan_to_num(-1), y.params[k].nan_to_num(-1)) for k in x.params)
    # resumable: asking for step 7 after other steps changes nothing
    a.batch(3)
    assert torch.equal(a.batch(7).degraded, x.degraded)


def test_different_steps_and_seeds_differ():
    s = stream()
    assert not torch.equal(s.batch(0).degraded, s.batch(1).degraded)
    assert not torch.equal(s.batch(0).clean, stream(seed=1).batch(0).clean)


def test_batches_are_well_formed_pairs():
    b = stream(degradation={"type": "rain", "preset": "large"}, patch=24, batch=5).batch(0)
    assert b.degraded.shape == b.clean.shape == (5, 3, 24, 24) and b.mask.shape == (5, 1, 24, 24)
    assert torch.equal(b.degraded, (b.clean + b.layer).clamp(0, 1))


def test_background_images_are_fixed_per_n_backgrounds():
    s = stream(n_backgrounds=1, background_options={"size": 16}, batch=8)
    image = make_background("smooth", 16, seed=0, size=16).images(1)[0]
    variants = [image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2)]
    for step in range(3):
        for crop in s.batch(step).clean:  # crops of the single background, possibly flipped
            assert any(torch.equal(crop, v) for v in variants)
    assert torch.equal(stream(n_backgrounds=5).images[:3], stream(n_backgrounds=3).images)


def test_clean_fraction_is_respected_and_clean_pairs_are_untouched():
    s = stream(batch=10, clean_fraction=0.25)
    counts = []
    for step in range(40):
        b = s.batch(step)
        flag = b.params["clean"].bool()
        counts.append(int(flag.sum()))
        assert torch.equal(b.degraded[flag], b.clean[flag])
        assert float(b.layer[flag].abs().sum()) == 0 and float(b.mask[flag].sum()) == 0
        assert float(b.soft_mask[flag].sum()) == 0
        assert bool(b.params["amount"][flag].isnan().all()) and not bool(b.params["amount"][~flag].isnan().any())
        assert float(b.mask[~flag].sum()) > 0  # the others are rainy
    assert set(counts) <= {2, 3}  # floor/ceil of 0.25 * 10
    assert abs(sum(counts) / 400 - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 400)
    assert all(int(stream(clean_fraction=0.0).batch(i).params["clean"].sum()) == 0 for i in range(3))
    assert int(stream(clean_fraction=1.0).batch(0).params["clean"].sum()) == 6


def test_stream_is_an_iterable_dataset_for_dataloaders():
    s = stream(start_step=4, steps=3)
    loaded = list(torch.utils.data.DataLoader(s, batch_size=None))
    assert len(loaded) == 3
    for i, b in enumerate(loaded):
        assert torch.equal(b.degraded, s.batch(4 + i).degraded)


@pytest.mark.parametrize("kw, needle", [
    ({"clean_fraction": 1.5}, "'clean_fraction'"),
    ({"n_backgrounds": 0}, "'n_backgrounds'"),
    ({"batch": 0}, "'batch'"),
    ({"degradation": {"type": "rain", "preset": "monsoon"}}, "'monsoon'"),
    ({"background": "marble"}, "'marble'"),
    ({"background_options": {"complexity": 2}}, "'complexity'"),
])
def test_bad_stream_configs_raise_config_errors(kw, needle):
    with pytest.raises(ConfigError) as info:
        stream(**kw)
    assert needle in str(info.value)


def test_evaluation_set_shares_clean_test_images_across_seeded_splits():
    splits = {"id": RAIN, "ood": {"type": "rain", "preset": "large"}}
    data = evaluation_set("smooth", splits, n_images=3, patch=16, seed=4)
    assert list(data) == ["id", "ood"]
    expected = make_background("smooth", 16, seed=4).images(3, split="test")[..., 8:24, 8:24]  # centre crops
    for batch in data.values():
        assert torch.equal(batch.clean, expected)
        assert torch.equal(batch.degraded, (batch.clean + batch.layer).clamp(0, 1))
    assert not torch.equal(data["id"].layer, data["ood"].layer)
    train = make_background("smooth", 16, seed=4).images(3, split="train")[..., 8:24, 8:24]
    assert not any(torch.equal(a, b) for a in expected for b in train)
    # deterministic, and a split's data does not depend on which other splits exist
    again = evaluation_set("smooth", {"ood": splits["ood"], "new": RAIN}, n_images=3, patch=16, seed=4)
    assert torch.equal(again["ood"].degraded, data["ood"].degraded)


def test_evaluation_set_errors_name_the_split():
    with pytest.raises(ConfigError, match="'ood'.*'angle'"):
        evaluation_set("smooth", {"ood": {"type": "rain", "angle": [50, 10]}}, n_images=1, patch=8, seed=0)
    with pytest.raises(ConfigError, match="'splits'"):
        evaluation_set("smooth", {}, n_images=1, patch=8, seed=0)
