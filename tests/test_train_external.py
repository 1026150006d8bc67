"""Published architectures on the grid: [base.model] arch = "FILE.py:Class" trains, saves, reloads and is
probed by module name like probe's own families."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from probe.grid.spec import StudySpec
from probe.models.checkpoint import load_model
from probe.probes.activations import Activations
from probe.probes.evaldata import eval_data_for_run
from probe.train import train

ARCHS = Path(__file__).parent / "external_archs"


def _spec(tmp_path: Path) -> Path:
    spec_file = tmp_path / "specs" / "arch_study.toml"
    spec_file.parent.mkdir()
    rel = os.path.relpath(ARCHS / "nets.py", spec_file.parent)  # relative to the spec, not the cwd
    spec_file.write_text(f"""
[study]
name = "archs"
[base]
seed = 0
device = "cpu"
[base.model]
arch = "{rel}:KwargsOnly"
pad_multiple = 4
[base.model.kwargs]
embed_dim = 8
depth = 2
[base.data]
patch = 24
background = "smooth"
[base.train]
iterations = 3
batch = 2
[base.eval]
n_images = 2
[axes]
n_backgrounds = [1, 2]
""")
    return spec_file


def test_a_user_architecture_trains_and_is_probed_by_module_name(tmp_path):
    spec = StudySpec.from_toml(_spec(tmp_path))
    config = spec.config_for(spec.cells()[0])
    assert config.model.family == "external" and config.model.size == "default"
    assert config.model.kwargs["arch"] == f"{(ARCHS / 'nets.py').resolve()}:KwargsOnly"
    assert config.model.kwargs["arch_kwargs"] == {"embed_dim": 8, "depth": 2}
    from probe.train.config import TrainConfig

    assert TrainConfig.from_dict(config.to_dict()).model == config.model  # what a grid worker rebuilds
    record = train(config, tmp_path / "run")
    assert record["status"] == "done" and record["model"]["family"] == "external"
    model = load_model(tmp_path / "run")
    assert type(model).__name__ == "KwargsOnly" and model._probe_conv.pad_multiple == 4
    fresh = load_model(tmp_path / "run")
    x = torch.rand(1, 3, 21, 22)
    assert torch.equal(model(x), fresh(x)) and model(x).shape == x.shape
    data = eval_data_for_run(tmp_path / "run")
    result = Activations(layers=["conv_first", "layers.1"]).run(model, data)
    assert {m["layer"] for m in result.metrics if "layer" in m} == {"conv_first", "layers.1"}
    default = Activations().run(model, data)  # no layers given: the documented default selection
    assert {m["layer"] for m in default.metrics if "layer" in m} == {"conv_first", "layers", "conv_last"}


def test_a_grid_of_a_user_architecture_runs_measures_and_reports_as_its_own_family(tmp_path):
    from probe.grid.runner import run_grid
    from probe.measure import measure
    from probe.report.build import build_report
    from probe.store import read_metrics

    assert run_grid(_spec(tmp_path), tmp_path / "models", workers=1)["done"] == 2
    store = tmp_path / "rep" / "results.h5"
    summary = measure(tmp_path / "models", out=store)
    assert summary["computed"] == 4 and not summary["failed"]
    frame = read_metrics(store)
    assert set(frame["family"]) == {"KwargsOnly"} and set(frame["n_backgrounds"]) == {1, 2}
    assert "section failed" not in build_report(store.parent).read_text()



def test_a_network_with_several_image_outputs_is_refused_until_output_names_one(tmp_path):
    """An untrained multi-stage network cannot show which output is the image: training refuses in one line
    instead of training whichever comes first; with `output` it trains that one."""
    import pytest

    from probe.errors import ConfigError
    from probe.train.config import TrainConfig

    spec = StudySpec.from_toml(_spec(tmp_path))
    raw = spec.config_for(spec.cells()[0]).to_dict()
    raw["model"]["kwargs"].update(arch=f"{ARCHS / 'nets.py'}:MultiStage", arch_kwargs={"width": 4})
    with pytest.raises(ConfigError, match=r"MultiStage: its forward returns .*2 image-shaped outputs \(0, 1\).*"
                                          r"set output = \"PATH\" in the spec's \[model\] table"):
        train(TrainConfig.from_dict(raw), tmp_path / "refused")
    assert not (tmp_path / "refused" / "model.safetensors").exists()
    raw["model"]["kwargs"]["output"] = 0
    record = train(TrainConfig.from_dict(raw), tmp_path / "run")
    assert record["status"] == "done"
    assert load_model(tmp_path / "run")._probe_conv.output == 0


def test_the_families_study_trains_a_user_architecture_beside_probes_families(tmp_path):
    """analyses/model_families.toml's `dncnn` level is a user file (archs/dncnn_arch.py), not a probe family:
    it builds from the spec's folder, trains, and is stored and ranked under its class name."""
    from probe.models import build
    from probe.study import load_study

    root = Path(__file__).resolve().parent.parent / "analyses"
    spec = load_study(root / "model_families.toml", scale="long")
    cells = [c for c in spec.cells() if dict(c.values)["family"] in {"resnet", "dncnn"}]
    assert {dict(c.values)["family"] for c in spec.cells()} == {"resnet", "unet", "swinir", "nafnet", "dncnn"}
    config = spec.config_for(cells[0])
    assert config.data.background == "dead_leaves"
    dncnn = next(spec.config_for(c) for c in cells if dict(c.values)["family"] == "dncnn")
    assert dncnn.model.family == "external"
    assert dncnn.model.kwargs["arch"] == f"{(root / 'archs' / 'dncnn_arch.py').resolve()}:DnCNN"
    net = build(dncnn.model.family, dncnn.model.size, **dncnn.model.kwargs)
    assert 15_000 < sum(p.numel() for p in net.parameters()) < 30_000  # the size of probe's tiny networks
    x = torch.rand(2, 3, 20, 22)
    net.eval()
    assert net(x).shape == x.shape
    from probe.measure import measure
    from probe.store import read_metrics
    from probe.train.config import TrainConfig

    raw = dncnn.to_dict()  # the same cell, a few steps on a few small images
    raw["train"].update(iterations=3, batch=2, checkpoint_every=3)
    raw["data"].update(patch=24, n_backgrounds=4)
    raw["eval"]["n_images"] = 2
    raw["device"] = "cpu"
    assert train(TrainConfig.from_dict(raw), tmp_path / "models" / "dncnn")["status"] == "done"
    summary = measure(tmp_path / "models", out=tmp_path / "rep" / "results.h5", probes=["generalization"])
    assert not summary["failed"]
    assert set(read_metrics(tmp_path / "rep" / "results.h5")["family"]) == {"DnCNN"}
