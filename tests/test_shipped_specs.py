"""Every study spec (the whole plan, probe parameters included) and example config the project ships loads
and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.study import load_study
from probe.train.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "analyses").glob("*.toml")), ids=lambda p: p.name)
def test_study_specs_validate(path):
    spec = load_study(path)
    cells = spec.cells()
    assert len(cells) >= 2 and len({c.id for c in cells}) == len(cells)


def test_default_study_matches_its_promise():
    spec = load_study(ROOT / "analyses" / "derain_complexity.toml")
    assert len(set(spec.axes["background"])) >= 3  # a complexity ladder: smooth < dead_leaves < natural
    n = spec.axes["n_backgrounds"]
    assert len(n) >= 2 and max(n) >= 256 and min(n) <= 16  # a Spearman over n per source
    assert len(set(spec.axes["seed"])) >= 3  # every headline number gets a CI over seeds
    splits = spec.config_for(spec.cells()[0]).eval.splits
    assert {"id", "ood"} <= set(splits) and len(set(splits) - {"id"}) >= 2  # two unseen rain families
    assert "shortcut" in spec.probes


def test_example_train_config_validates():
    config = TrainConfig.from_toml(ROOT / "docs" / "examples" / "train_resnet.toml")
    assert config.model.family == "resnet" and set(config.eval.splits) == {"id", "ood"}
