"""The whole study plan is validated when it is loaded (probe.study), and the grid layer never imports probes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import study_toml, tiny_study

from probe.cli import main
from probe.errors import ConfigError
from probe.grid.spec import StudySpec
from probe.study import check_probes, load_study

PLAN = {"study.name": "plan", "base.data": {"background": "smooth", "patch": 16}, "base.train.iterations": 2,
        "base.eval.n_images": 2, "base.eval.splits": {"id": {"type": "rain", "preset": "small"}},
        "axes.n_backgrounds": [1, 2]}  # changes to the suite's tiny study


def write(tmp_path: Path, probes: str = '["generalization", "cka"]', changes: dict | None = None,
          tail: str = "") -> Path:
    """The plan's TOML with ``probes`` (TOML text), dotted-path ``changes`` and raw TOML ``tail`` appended."""
    path = tmp_path / "plan.toml"
    spec = tiny_study({**PLAN, "study.probes": json.loads(probes), **(changes or {})})
    path.write_text(study_toml(spec) + tail)
    return path


def test_a_valid_plan_loads_with_its_probe_parameters(tmp_path):
    path = write(tmp_path, tail='[study.probe_params.cka]\nkernel = "rbf"\nn_images = 8\n')
    spec = load_study(path)
    assert isinstance(spec, StudySpec) and spec.probe_params == {"cka": {"kernel": "rbf", "n_images": 8}}
    assert [c.id for c in spec.cells()] == ["n_backgrounds-1", "n_backgrounds-2"]
    assert load_study(spec.to_dict(), source="table").probes == ["generalization", "cka"]


@pytest.mark.parametrize("probes, tail, needles", [
    # a parameter the probe refuses: the probe's own message, prefixed with the file and the table
    ('["cka"]', '[study.probe_params.cka]\nkernal = "rbf"\n',
     ["plan.toml: study.probe_params.cka:", "unknown parameter 'kernal' for probe 'cka'"]),
    ('["cka"]', '[study.probe_params.cka]\nkernel = "poly"\n',
     ["study.probe_params.cka:", "'kernel' must be one of linear, rbf, got 'poly'"]),
    # a table for a probe that does not exist
    ('["cka"]', '[study.probe_params.ckaa]\nkernel = "rbf"\n',
     ["plan.toml: unknown probe 'ckaa' in study.probe_params", "available:"]),
    # an unknown probe name (the registry's message, as before)
    ('["generalisation"]', "", ["unknown probe 'generalisation'"]),
])
def test_bad_probe_plans_fail_at_load_in_one_line_and_exit_2(tmp_path, capsys, probes, tail, needles):
    path = write(tmp_path, probes=probes, tail=tail)
    StudySpec.from_toml(path)  # the grid's part of the plan is fine: the probe part is what fails
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert all(n in message for n in needles) and "\n" not in message, message
    capsys.readouterr()
    assert main(["grid", "run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needles[-1] in err
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_an_unknown_study_key_is_refused_with_its_name(tmp_path):
    path = write(tmp_path, changes={"study.measure": ["cka"]})
    with pytest.raises(ConfigError, match=r"unknown key study\.'measure'"):
        load_study(path)
    assert main(["grid", "run", str(path), "--dry-run"]) == 2


def test_check_probes_checks_tables_of_probes_not_selected():
    check_probes(["generalization"], {"cka": {"kernel": "linear"}})
    with pytest.raises(ConfigError, match="study.probe_params.cka"):
        check_probes(["generalization"], {"cka": {"kernel": "nope"}}, source="s.toml")


def test_the_demo_loads_its_study_through_the_whole_plan_check(tmp_path, capsys, monkeypatch):
    bad = write(tmp_path, tail='[study.probe_params.cka]\nkernal = "rbf"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--spec", str(bad)]) == 2
    assert "unknown parameter 'kernal'" in capsys.readouterr().err
    assert not (tmp_path / "trained_models").exists()


def test_importing_every_grid_module_never_imports_the_probes():
    code = ("import importlib, pkgutil, sys, probe.grid\n"
            "for m in pkgutil.iter_modules(probe.grid.__path__):\n"
            "    importlib.import_module('probe.grid.' + m.name)\n"
            "bad = sorted(k for k in sys.modules if k.startswith(('probe.probes', 'probe.methods', 'probe.report')))\n"
            "print(','.join(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"probe.grid imports {proc.stdout.strip()}"
