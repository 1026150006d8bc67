"""Device correctness without a GPU: every probe, the trainer and measure on a fake accelerator (tensors that
refuse to mix with host tensors, as CUDA does), plus the device / precision helpers."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from probe.device import autocast, model_device, prepared, resolve_device, to_device
from probe.errors import ConfigError
from probe.models.checkpoint import load_model
from probe.probes import PROBES
from probe.probes.evaldata import eval_data_for_run
from probe.train import train
from probe.train.step import LossWindow, Prefetcher
from tests.conftest import TINY_CONFIG, study_toml, tiny_study
from tests.fake_device import FAKE, fake_accelerator

SMALL_PARAMS = {"activations": {"n_images": 2, "separability": False}, "ddr": {"n_backgrounds": 2}, "cka": {},
                "attribution": {"n_images": 1, "steps": 8}, "generalization": {}, "decomposition": {},
                "cem": {"n_images": 1, "roi": 8, "coarse": 1, "fine": 1, "faithfulness_points": 2}}


_CPU: dict[str, dict] = {}  # each probe's CPU result, computed once


@pytest.fixture(scope="module")
def tiny_run(trained_run):
    return trained_run(TINY_CONFIG)


def _metrics(result) -> dict[tuple, float]:
    return {(m["split"], m["metric"], m.get("layer")): m["value"] for m in result.metrics}


def test_the_fake_accelerator_catches_a_host_tensor_like_cuda():
    with fake_accelerator() as dev:
        a = torch.ones(3).to(dev)
        assert a.device == FAKE
        with pytest.raises(RuntimeError, match="same device"):
            _ = a + torch.ones(3)
        assert float((a + torch.ones(())).sum()) == 6.0  # 0-dim host scalars mix, as on CUDA
        assert torch.equal(a.cpu(), torch.ones(3))


@pytest.mark.parametrize("name", sorted(SMALL_PARAMS))
@pytest.mark.parametrize("data_on_device", [False, True], ids=["data-on-host", "data-on-device"])
def test_every_probe_runs_on_an_accelerator_and_agrees_with_the_cpu(tiny_run, name, data_on_device):
    per_model = {n for n in PROBES.names() if not getattr(PROBES.get(n), "study_level", False)}
    assert set(SMALL_PARAMS) == per_model, "a new per-model probe must join the device test"
    data = eval_data_for_run(tiny_run)
    if name not in _CPU:
        _CPU[name] = _metrics(PROBES.get(name)(**SMALL_PARAMS[name]).run(load_model(tiny_run), data))
    expected = _CPU[name]
    model = load_model(tiny_run)
    with fake_accelerator() as dev:
        model.to(dev)
        result = PROBES.get(name)(**SMALL_PARAMS[name]).run(model, to_device(data, dev) if data_on_device else data)
    got = _metrics(result)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert np.isclose(got[key], value, rtol=1e-4, atol=1e-6, equal_nan=True), (key, got[key], value)


GRID = study_toml(tiny_study({
    "study.name": "devicestudy",
    "study.probes": ["generalization", "decomposition", "activations", "cka", "ddr", "attribution", "cem",
                     "shortcut"],
    "study.probe_params": {"activations": {"n_images": 2, "pixels_per_class": 8}, "ddr": {"n_backgrounds": 2},
                           "attribution": {"n_images": 1, "steps": 4, "components": False},
                           "cem": SMALL_PARAMS["cem"]},
    "base.device": None, "base.degradation": None,  # the device comes from run_grid(device=...)
    "base.data.background": "smooth", "base.eval.n_images": 4, "axes.n_backgrounds": [1, 2]}))


def test_grid_and_measure_on_an_accelerator(tmp_path):
    """train → grid → measure with every probe (and the cross-model CKA), all on the device (the report reads
    the store alone, so it has no device; test_cuda.py builds it after a CUDA run)."""
    from probe.grid.runner import run_grid
    from probe.measure import measure
    from probe.store import read_metrics

    (tmp_path / "study.toml").write_text(GRID)
    with fake_accelerator() as dev:
        summary = run_grid(tmp_path / "study.toml", tmp_path / "models", workers=1, device=str(dev),
                           show_progress=False)
        assert summary["done"] == 2 and summary["failed"] == 0
        measured = measure(tmp_path / "models", out=tmp_path / "rep" / "results.h5", device=str(dev),
                           show_progress=False)
    # every probe on both models, plus the shortcut score's probe-set attribution per model
    assert measured["computed"] == 2 * len(SMALL_PARAMS) + 2 and "cka_models" in measured
    assert "shortcut" in measured  # the study-level probe, scored from the store
    frame = read_metrics(tmp_path / "rep" / "results.h5")
    assert set(frame["probe"]) >= set(SMALL_PARAMS)
    assert json.loads((tmp_path / "models" / "n_backgrounds-1" / "run.json").read_text())["device"] == "meta"


def test_to_device_moves_batches_and_eval_data_and_keeps_the_rest(tiny_run):
    data = eval_data_for_run(tiny_run)
    with fake_accelerator() as dev:
        moved = to_device(data, dev)
        assert moved.clean.device == FAKE and moved.splits["ood"].mask.device == FAKE
        assert moved.alt_clean.device == FAKE and moved.info == data.info and moved.degradations is not None
        assert to_device({"a": [torch.zeros(2)], "b": 3}, dev)["a"][0].device == FAKE
    assert data.clean.device.type == "cpu"  # the original is untouched


def test_resolve_device_and_prepared():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")
    model = torch.nn.Linear(2, 2).train()
    with prepared(model, "cpu") as m:
        assert not m.training and not torch.is_grad_enabled()
    assert model.training and model_device(model).type == "cpu"


def test_loss_window_reports_the_first_non_finite_step():
    window = LossWindow(torch.device("cpu"), capacity=2)
    for step, value in enumerate([0.5, 0.25, float("nan"), float("inf"), 0.125]):
        window.add(10 + step, torch.tensor(value))
    values, bad = window.flush()
    assert values[:2] == [0.5, 0.25] and len(values) == 5  # grew past its capacity
    assert bad[0] == 12 and bad[1] != bad[1]
    assert window.flush() == ([], None)


def test_prefetcher_gives_each_step_its_pure_batch():
    from probe.data.paired import PairedStream

    stream = PairedStream("smooth", 2, {"type": "rain", "preset": "small"}, patch=16, batch=2, seed=3)
    got = [b.degraded for b in Prefetcher(stream, 4, 7, torch.device("cpu"))]
    assert len(got) == 3 and all(torch.equal(g, stream.batch(4 + i).degraded) for i, g in enumerate(got))


def test_bf16_and_channels_last_train_and_are_recorded(tmp_path):
    base = copy.deepcopy(TINY_CONFIG)
    plain = train(base, tmp_path / "fp32", show_progress=False)
    assert plain["step"] == {"precision": "fp32", "channels_last": False, "compile": False}
    config = copy.deepcopy(TINY_CONFIG)
    config["train"].update(precision="bf16", channels_last=True)
    record = train(config, tmp_path / "bf16", show_progress=False)
    assert record["status"] == "done" and record["step"]["precision"] == "bf16"
    assert record["step"]["channels_last"] is True
    assert abs(record["metrics"]["loss"] - plain["metrics"]["loss"]) < 0.02  # same run, bf16 rounding
    with autocast("cpu", "bf16"):
        assert torch.nn.Linear(4, 4)(torch.rand(2, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("key, value, message", [
    ("precision", "fp8", "train.precision = 'fp8' is invalid; expected auto, fp32, bf16, fp16"),
    ("channels_last", "yes", "train.channels_last = 'yes' is invalid"),
    ("compile", 1, "train.compile = 1 is invalid"),
])
def test_step_options_are_validated(key, value, message):
    from probe.train.config import TrainConfig

    config = copy.deepcopy(TINY_CONFIG)
    config["train"][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict(config)


def test_a_run_recorded_before_the_step_options_existed_still_resumes(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    record = train(config, tmp_path / "run", show_progress=False)
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    for key in ("precision", "channels_last", "compile"):
        del stored["config"]["train"][key]
    (tmp_path / "run" / "run.json").write_text(json.dumps(stored))
    assert train(config, tmp_path / "run", show_progress=False)["weights_sha256"] == record["weights_sha256"]


def test_a_non_finite_loss_on_the_device_is_found_at_its_first_step(tmp_path, monkeypatch):
    """Off the CPU the loss is read once per window (here 4 steps); the failure still names step 2."""
    from probe.errors import TrainingError
    from probe.models import FAMILIES
    from tests.test_train import _NaNAfterTwo

    monkeypatch.setitem(FAMILIES._loaded, "nan_after_two", _NaNAfterTwo)
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {"family": "nan_after_two", "size": "tiny"}
    config["train"].update(log_every=4, checkpoint_every=0)
    with fake_accelerator() as dev, pytest.raises(TrainingError, match="non-finite loss .* at step 2"):
        train(config, tmp_path / "run", device=str(dev), show_progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == 2
    assert "step=2 loss=nan FAILED" in (tmp_path / "run" / "train.log").read_text()


def test_every_probe_runs_without_tf32_and_restores_the_setting(tiny_run):
    """Probes measure in plain float32 on a GPU (cuDNN's default TF32 moved CUDA-vs-CPU numbers by ~0.5 %
    on an H200); the flags seen inside a probe's forward passes are recorded by a forward hook."""
    from probe.device import full_precision

    model = load_model(tiny_run)
    seen = []
    model.register_forward_hook(lambda *_: seen.append((torch.backends.cudnn.allow_tf32,
                                                        torch.backends.cuda.matmul.allow_tf32)))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        PROBES.get("generalization")().run(model, eval_data_for_run(tiny_run))
        assert seen and all(flags == (False, False) for flags in seen)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
        with pytest.raises(RuntimeError), full_precision():
            raise RuntimeError("restored on error too")
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
