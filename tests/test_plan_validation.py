"""The plan is validated at load: background, degradation and model options, study names (issue 25 kind 6), and
planning is linear in cells (kind 5's `--dry-run` bullet)."""

from __future__ import annotations

import copy
import time

import pytest
from conftest import tiny_study

from probe.cli import main
from probe.data.backgrounds import BACKGROUNDS
from probe.errors import ConfigError
from probe.grid import checks
from probe.grid.runner import run_grid
from probe.grid.spec import StudySpec

BASE = tiny_study({"base.data.background": "smooth"})["base"]


def spec(axes=None, base=None, name="plan", cells=None):
    raw = tiny_study({"study.name": name, "base": base or BASE, "axes": axes or {}})
    if cells:
        raw["cells"] = cells
    return raw


def refused(raw) -> str:
    with pytest.raises(ConfigError) as info:
        StudySpec.from_dict(raw, source="s.toml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.toml")
    return message


@pytest.mark.parametrize("name", BACKGROUNDS.names())
def test_an_unknown_option_names_the_source_and_every_declared_option(name):
    cls = BACKGROUNDS.get(name)
    base = copy.deepcopy(BASE)
    base["data"]["background"] = name
    message = refused(spec({"data.background_options.no_such_option": [1]}, base))
    assert "data.background_options" in message and f"background {name!r}" in message
    assert f"allowed: {', '.join(sorted(cls.declared_options()))}" in message


def test_the_complexity_alias_on_a_source_without_it_says_who_has_it():
    message = refused(spec({"complexity": [0.1, 0.9]}))
    assert "unknown option 'complexity'; allowed: blobs, size" in message
    assert "'complexity' is an option of dead_leaves" in message
    base = copy.deepcopy(BASE)
    base["data"]["background"] = "dead_leaves"
    assert len(StudySpec.from_dict(spec({"complexity": [0.1, 0.9]}, base)).cells()) == 2


def test_a_bad_value_is_refused_with_what_the_option_accepts():
    message = refused(spec({"data.background_options.blobs": [2, -1]}))
    assert "option 'blobs' must be an int >= 0 (soft blobs per image), got -1" in message
    assert "[cell blobs--1]" in message


def test_a_folder_root_that_is_missing_or_empty_is_refused(tmp_path):
    base = copy.deepcopy(BASE)
    base["data"]["background"] = "folder"
    missing = refused(spec({"data.background_options.root": [str(tmp_path / "nope")]}, base))
    assert str(tmp_path / "nope") in missing and "does not exist" in missing
    (tmp_path / "empty").mkdir()
    assert "holds no images" in refused(spec({"data.background_options.root": [str(tmp_path / "empty")]}, base))


def test_evaluation_and_mixture_options_are_checked_too():
    base = copy.deepcopy(BASE)
    base["eval"]["background_options"] = {"blob": 2}
    assert "eval.background_options: background 'smooth': unknown option 'blob'" in refused(spec(base=base))
    base = copy.deepcopy(BASE)
    base["data"]["background"] = "mixture"
    base["data"]["background_options"] = {"sources": ["smooth", "dead_leaves"],
                                          "options": {"dead_leaves": {"complexty": 0.5}}}
    assert "source 'dead_leaves'" in refused(spec(base=base)) and "complexty" in refused(spec(base=base))


def test_an_interaction_of_two_axes_in_one_cell_is_caught():
    """patch 64 with size 32 is the only bad combination of four: the linear validator still builds it."""
    message = refused(spec({"patch": [16, 64], "data.background_options.size": [128, 32]}))
    assert "[cell patch-64__size-32]" in message and "'size' must be >= patch" in message


@pytest.mark.parametrize("axes, where", [
    ({"degradation.amout": [0.1]}, "degradation: rain: unknown axis or base key 'amout'; allowed: amount"),
    ({"model.widht": [8]}, "model: resnet: unknown option(s) 'widht'; allowed: channels"),
    ({"eval.splits.ood": [{"type": "noise", "sigmaa": 5}]}, "eval.splits.ood: noise: unknown"),
])
def test_degradation_and_model_options_name_the_key_and_the_allowed_ones(axes, where):
    assert where in refused(spec(axes))


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", ".hidden", "x" * 129, "ü"])
def test_unsafe_study_names_are_refused(name):
    assert "study.name" in refused(spec(name=name))


@pytest.mark.parametrize("name", ["derain_v1.2", "a-b", "A0"])
def test_ordinary_study_names_pass(name):
    assert StudySpec.from_dict(spec(name=name)).name == name


def test_dry_run_refuses_in_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = ".."\n[base.data]\nbackground = "smooth"\n')
    assert main(["grid", "run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.name = '..'" in err[0]


def test_validation_builds_few_configs_for_many_cells(monkeypatch):
    """Linear planning: 20,000 cells over two axes build one config per new axis value, not one per cell."""
    built = []
    original = StudySpec.config_for

    def counting(self, cell):
        built.append(cell.id)
        return original(self, cell)

    monkeypatch.setattr(StudySpec, "config_for", counting)
    loaded = StudySpec.from_dict(spec({"seed": list(range(200)), "n_backgrounds": list(range(1, 101))}))
    assert len(loaded.cells()) == 20_000
    assert len(built) <= 200 + 100
    picked = checks.cells_to_validate(loaded, loaded.cells())
    assert {c.axes["seed"] for c in picked} == set(range(200))
    assert {c.axes["n_backgrounds"] for c in picked} == set(range(1, 101))


@pytest.mark.slow
def test_dry_run_of_100000_cells_takes_seconds(tmp_path):
    """The quadratic dry-run never finished 100,000 cells in 15 min; now validation + listing + estimate are
    linear (about 5 s of CPU here). The bound is loose for a shared machine, far below quadratic."""
    t0 = time.monotonic()
    loaded = StudySpec.from_dict(spec({"seed": list(range(1000)), "n_backgrounds": list(range(1, 101))}))
    summary = run_grid(loaded, tmp_path / "out", dry_run=True)
    from probe.grid.estimate import estimate_study

    estimate = estimate_study(loaded)
    assert len(summary["cells"]) == len(summary["todo"]) == 100_000
    assert estimate["per_family"]["resnet"] > 0
    assert time.monotonic() - t0 < 90
