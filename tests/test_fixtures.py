"""The suite's shared study factory (tests/conftest.py): specs round-trip through TOML, grids are built once."""

from __future__ import annotations

import pytest
import tomllib
from conftest import TINY_STUDY, grid_changes, study_toml, tiny_study

from probe.grid.spec import StudySpec


def test_tiny_study_applies_dotted_changes_to_a_fresh_copy():
    spec = tiny_study({"study.name": "x", "base.data.background": "natural", "base.eval.splits.ood": None,
                       "axes": {"seed": [0, 1]}})
    assert spec["study"]["name"] == "x" and spec["base"]["data"] == {"patch": 24, "background": "natural"}
    assert list(spec["base"]["eval"]["splits"]) == ["id"] and spec["axes"] == {"seed": [0, 1]}
    assert TINY_STUDY["study"]["name"] == "tiny_study" and "ood" in TINY_STUDY["base"]["eval"]["splits"]


def test_study_toml_round_trips_every_kind_of_value():
    spec = tiny_study({
        "study.probe_params": {"ddr": {"degradations": [{"type": "rain", "preset": "small"}], "n_backgrounds": 3}},
        "base.train.lr": 1e-3, "base.train.compile": False,
        "levels": {"remedy": {"none": {}, "mix": {"data.background": "mixture",
                                                  "data.background_options": {"weights": [0.5, 0.5]}}}},
        "axes": {"remedy": ["none", "mix"], "seed": [0, 1]},
    })
    text = study_toml(spec)
    assert tomllib.loads(text) == spec
    assert "[levels.remedy.none]" in text and '"data.background" = "mixture"' in text
    assert [c.id for c in StudySpec.from_dict(tomllib.loads(text)).cells()][:1] == ["remedy-none__seed-0"]
    with pytest.raises(TypeError, match="no TOML form"):
        study_toml({"study": {"name": object()}})


def test_trained_grid_is_built_once_and_read_only(trained_grid):
    spec = tiny_study({"study.name": "factory_check", "axes": {"n_backgrounds": [1]}, "base.train.iterations": 1})
    grid = trained_grid(spec)
    assert trained_grid(tiny_study({"study.name": "factory_check", "axes": {"n_backgrounds": [1]},
                                    "base.train.iterations": 1})) == grid
    assert (grid / "n_backgrounds-1" / "model.safetensors").exists()
    assert tomllib.loads((grid.parent / "spec.toml").read_text()) == spec
    assert grid_changes(grid) == []
    stray = grid / "n_backgrounds-1" / "stray.txt"
    try:
        stray.write_text("tests must not write into a shared grid")
    except PermissionError:  # the read-only guard binds (a non-root user)
        return
    assert grid_changes(grid) == ["n_backgrounds-1/stray.txt"]  # root: caught at the end of the session instead
    stray.unlink()
    assert grid_changes(grid) == []
