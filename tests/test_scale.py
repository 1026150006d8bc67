"""The scale ladder (probe.grid.scale): rungs of one spec, chosen by --scale, each rung's expected time."""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from probe.errors import ConfigError
from probe.grid.scale import apply_scale, deep_merge, rung_names
from probe.grid.spec import StudySpec
from probe.study import load_study

ROOT = Path(__file__).resolve().parent.parent

TOY = """
[study]
name = "toy"
probes = ["generalization"]

[base]
seed = 0
[base.model]
family = "resnet"
size = "tiny"
[base.data]
background = "smooth"
n_backgrounds = 4
patch = 16
[base.degradation]
type = "rain"
preset = "small"
[base.train]
iterations = 10
batch = 2
lr = 1e-3
[base.eval]
n_images = 2
[base.eval.splits.id]
type = "rain"
preset = "small"

[axes]
n_backgrounds = [1, 4]
seed = [0, 1]

[scale.demo]
description = "tiny"

[scale.pilot.axes]
seed = [100]

[scale.long]
description = "more steps"
[scale.long.base.train]
iterations = 50
[scale.long.axes]
seed = [0, 1, 2]
"""
RAW = tomllib.loads(TOY)


def test_default_rung_is_the_spec_as_written():
    spec = StudySpec.from_dict(RAW)
    assert spec.scale == "demo" and spec.name == "toy"
    assert len(spec.cells()) == 4
    assert {spec.config_for(c).train.iterations for c in spec.cells()} == {10}


def test_a_rung_merges_base_and_replaces_axes_and_renames_the_study():
    spec = StudySpec.from_dict(RAW, scale="long")
    assert spec.scale == "long" and spec.name == "toy_long"  # its own folders: never resumes another rung
    assert spec.axes == {"n_backgrounds": [1, 4], "seed": [0, 1, 2]}
    config = spec.config_for(spec.cells()[0])
    assert config.train.iterations == 50 and config.train.batch == 2 and config.train.lr == 1e-3
    assert config.name.startswith("toy_long/")  # every run record names the rung
    assert "rung long: more steps" in spec.description
    assert "scale" in RAW and RAW["base"]["train"]["iterations"] == 10  # the input is untouched


def test_pilot_rung_and_rung_order():
    assert StudySpec.from_dict(RAW, scale="pilot").axes["seed"] == [100]
    assert rung_names(RAW) == ["demo", "long", "pilot"]  # the ladder first, then the others
    assert rung_names({"base": {}}) == ["demo"]


def test_unknown_rung_names_the_defined_ones():
    with pytest.raises(ConfigError, match=r"no rung 'gpu'.*demo, long, pilot"):
        StudySpec.from_dict(RAW, scale="gpu", source="toy.toml")
    with pytest.raises(ConfigError, match=r"toy.toml: no rung 'long'.*add \[scale.NAME\]"):
        StudySpec.from_dict({k: v for k, v in RAW.items() if k != "scale"}, scale="long", source="toy.toml")


@pytest.mark.parametrize("bad, message", [
    ({"long": 3}, r"scale.long must be a table"),
    ({"long": {"iterations": 5}}, r"unknown key scale.long.iterations"),
    ({"long": {"base": [1]}}, r"scale.long.base must be a table"),
    ({"long": {"description": 1}}, r"scale.long.description must be a string"),
])
def test_bad_rung_tables_fail_in_one_line(bad, message):
    with pytest.raises(ConfigError, match=message):
        StudySpec.from_dict({**RAW, "scale": bad}, scale="long")


def test_a_rung_override_is_validated_like_the_base():
    raw = {**RAW, "scale": {"long": {"base": {"train": {"iterations": -1}}}}}
    StudySpec.from_dict(raw)  # the demo rung is fine
    with pytest.raises(ConfigError, match="iterations"):
        StudySpec.from_dict(raw, scale="long")


def test_deep_merge_merges_tables_and_replaces_values():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_apply_scale_drops_the_ladder():
    out = apply_scale(RAW, "pilot")
    assert "scale" not in out and out["_scale"] == "pilot" and out["study"]["name"] == "toy_pilot"


def test_load_study_and_estimate_every_rung(tmp_path):
    from probe.grid.estimate import CPU_STEP_MS, estimate_cpu, estimate_rungs, rung_table_text

    rows = {r["rung"]: r for r in estimate_rungs(RAW, "toy")}
    assert set(rows) == {"demo", "long", "pilot"}
    assert rows["long"]["cells"] == 6 and rows["long"]["iterations"] == [50]
    # 5x the steps and 1.5x the cells: 7.5x the CPU time (the same per-step time), on either machine
    assert rows["long"]["cpu_hours"] == pytest.approx(7.5 * rows["demo"]["cpu_hours"])
    assert rows["long"]["gpu_hours"] == pytest.approx(7.5 * rows["demo"]["gpu_hours"])
    spec = load_study(RAW, scale="long")
    # tiny ResNet at 16 px, batch 2: (16*16*2)/(48*48*8) of the reference step, on 2 workers
    expected = 6 * 50 * max(1.0, CPU_STEP_MS["resnet"] * 512 / 18432) / 1000 / 3600 / 2
    assert estimate_cpu(spec)["hours"] == pytest.approx(expected)
    text = rung_table_text(list(rows.values()))
    assert "long" in text and "CPU" in text and "GPU" in text
    with pytest.raises(ConfigError, match="already resolved to rung 'long'"):
        load_study(spec, scale="demo")


def test_cli_scale_and_dry_run(tmp_path, capsys):
    from probe.cli import main

    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    assert main(["grid", "run", str(path), "--scale", "long", "--dry-run", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "study toy_long: 6 cells" in out and "chosen rung: long" in out
    assert "  demo " in out and "  pilot " in out
    assert main(["demo", "--spec", str(path), "--scale", "pilot", "--dry-run"]) == 0
    assert "study toy_pilot: rung pilot, 2 cells" in capsys.readouterr().out
    assert main(["demo", "--spec", str(path), "--scale", "huge", "--dry-run"]) == 2
    assert "no rung 'huge'" in capsys.readouterr().err


def test_demo_finds_bundled_studies_by_name():
    from probe.demo import resolve_spec

    assert resolve_spec("derain_ntrend").name == "derain_ntrend.toml"
    assert resolve_spec("derain_ntrend.toml").name == "derain_ntrend.toml"
    with pytest.raises(ConfigError, match="no bundled study of that name"):
        resolve_spec("no_such_study")


@pytest.mark.parametrize("path", sorted((ROOT / "analyses").glob("*.toml")), ids=lambda p: p.name)
def test_every_rung_of_every_shipped_spec_loads(path):
    from probe.train.config import load_toml

    raw = load_toml(path)
    for rung in rung_names(raw, str(path)):
        spec = load_study(path, scale=rung)
        assert spec.scale == rung and len(spec.cells()) >= 1
