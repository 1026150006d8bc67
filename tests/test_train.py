"""Trainer, run directories, config validation and the catalog, on tiny real runs."""

from __future__ import annotations

import json

import pytest
import torch

import probe
from probe.cli import main
from probe.errors import CheckpointError, ConfigError, TrainingError
from probe.models import FAMILIES
from probe.models.base import RestorationModel
from probe.provenance import sha256_file
from probe.train.config import TrainConfig
from probe.train.trainer import lr_factor, train


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_train_writes_a_complete_run_directory(tmp_path, tiny_config):
    record = train(tiny_config, tmp_path / "run")
    run = tmp_path / "run"
    assert record["status"] == "done"
    assert {"model.safetensors", "run.json", "train.log"} <= {p.name for p in run.iterdir()}
    assert not (run / "state.pt").exists()
    stored = json.loads((run / "run.json").read_text())
    assert stored["weights_sha256"] == sha256_file(run / "model.safetensors")
    assert stored["config"]["model"]["family"] == "resnet"
    assert {"psnr_id", "psnr_ood", "psnr_input_id", "loss"} <= set(stored["metrics"])
    assert stored["provenance"]["versions"]["torch"]
    assert stored["history"][-1]["step"] == 6
    model = probe.load_model(run)
    assert not model.training
    x = torch.rand(1, 3, 20, 28)
    assert model(x).shape == x.shape


def test_same_seed_gives_identical_weights_and_other_seed_differs(tmp_path, tiny_config):
    train(tiny_config, tmp_path / "a")
    train(tiny_config, tmp_path / "b")
    other = dict(tiny_config, seed=1)
    train(other, tmp_path / "c")
    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, tiny_config, monkeypatch):
    from probe.data import paired

    train(tiny_config, tmp_path / "whole")
    original = paired.PairedStream.batch

    def dying(self, step):
        if step == 4:
            raise KeyboardInterrupt("simulated kill")
        return original(self, step)

    monkeypatch.setattr(paired.PairedStream, "batch", dying)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "state.pt").exists()
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["status"] == "interrupted"  # recorded (issue 25)
    monkeypatch.setattr(paired.PairedStream, "batch", original)
    record = train(tiny_config, tmp_path / "resumed")
    assert record["resumed_from"] == 4
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_finished_run_is_not_retrained(tmp_path, tiny_config):
    first = train(tiny_config, tmp_path / "run")
    mtime = (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns
    second = train(tiny_config, tmp_path / "run")
    assert second["finished"] == first["finished"]
    assert (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns == mtime


def test_a_different_config_in_the_same_directory_is_refused(tmp_path, tiny_config):
    train(tiny_config, tmp_path / "run")
    changed = dict(tiny_config, seed=3)
    with pytest.raises(ConfigError, match="different config"):
        train(changed, tmp_path / "run")


class _NaNAfterTwo(RestorationModel):
    family = "nan_after_two"
    sizes = {"tiny": {}}

    def __init__(self, size="tiny", **kwargs):
        super().__init__(size, **kwargs)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.conv(x)
        return out * float("nan") if self.calls > 2 else out


def test_non_finite_loss_stops_the_run_and_marks_it_failed(tmp_path, tiny_config, monkeypatch):
    # registered for this test only: a global family would leak into tests parametrised over FAMILIES
    monkeypatch.setitem(FAMILIES._loaded, "nan_after_two", _NaNAfterTwo)
    tiny_config["model"] = {"family": "nan_after_two", "size": "tiny"}
    with pytest.raises(TrainingError, match="non-finite loss .* at step 2"):
        train(tiny_config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["failed_step"] == 2
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert probe.catalog(tmp_path).loc[0, "status"] == "failed"


@pytest.mark.parametrize("patch, message", [
    ({"train": {"iteratons": 5}}, "unknown key train.'iteratons'"),
    ({"train": {"loss": "huber"}}, "train.loss = 'huber' is invalid; expected l1, l2"),
    ({"data": {"n_backgrounds": 0}}, "data.n_backgrounds = 0"),
    ({"model": {"family": "resnot"}}, "model.family = 'resnot' is not a registered family"),
    ({"data": {"background": "mars"}}, "data.background = 'mars'"),
    ({"degradation": {"type": "rain", "preset": "tropical"}}, "degradation"),
    ({"eval": {"splits": {"ood": {"preset": "large"}}}}, "eval.splits.ood needs a 'type'"),
    ({"colour": 1}, "unknown key 'colour'"),
])
def test_config_errors_name_the_key(tiny_config, patch, message):
    raw = json.loads(json.dumps(tiny_config))
    for section, values in patch.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section].update(values)
        else:
            raw[section] = values
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_toml_config_with_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('name = "x"\n[model]\nfamily = "resnet"\nglobal_residual = false\n'
                    '[train]\niterations = 9\n')
    config = TrainConfig.from_toml(path, overrides=["train.iterations=3", "data.background=\"smooth\""])
    assert config.train.iterations == 3
    assert config.data.background == "smooth"
    assert config.model.kwargs == {"global_residual": False}


def test_cosine_schedule_is_a_pure_function_of_the_step(tiny_config):
    config = TrainConfig.from_dict(dict(tiny_config, train={"iterations": 100, "min_lr_ratio": 0.1}))
    assert lr_factor(config, 0) == pytest.approx(1.0)
    assert lr_factor(config, 50) == pytest.approx(0.55)
    assert lr_factor(config, 100) == pytest.approx(0.1)


def test_catalog_lists_runs_with_axes_and_metrics(tmp_path, tiny_config):
    train(dict(tiny_config, axes={"n_backgrounds": 4}), tmp_path / "grid" / "a")
    train(dict(tiny_config, seed=1, axes={"n_backgrounds": 4}), tmp_path / "grid" / "b")
    (tmp_path / "grid" / "broken").mkdir()
    (tmp_path / "grid" / "broken" / "run.json").write_text("{not json")
    frame = probe.catalog(tmp_path / "grid")
    assert list(frame["run_id"]) == ["a", "b", "broken"]
    assert list(frame["status"]) == ["done", "done", "corrupt"]
    assert {"path", "family", "size", "background", "n_backgrounds", "degradation", "train_range", "seed",
            "psnr_ood"} <= set(frame.columns)
    assert frame.loc[0, "degradation"] == "rain/small"
    assert frame.loc[1, "seed"] == 1


def test_train_cli_runs_and_bad_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('name = "cli"\n[data]\nbackground = "smooth"\nn_backgrounds = 2\npatch = 16\n'
                    '[train]\niterations = 2\nbatch = 2\n[eval]\nn_images = 2\n')
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done"
    path.write_text('[train]\nbatch = -1\n')
    assert main(["train", str(path), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.batch = -1" in err


def test_load_model_rejects_a_tampered_run(tmp_path, tiny_config):
    train(tiny_config, tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        probe.load_model(tmp_path / "run")
