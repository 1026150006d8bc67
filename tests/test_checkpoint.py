"""Checkpoints: safetensors round trips, run directories, foreign .pth files, and one-line named errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probe.errors import CheckpointError, ConfigError
from probe.models import FAMILIES, build
from probe.models.checkpoint import load_model, save_weights
from probe.provenance import sha256_file

FAMILY = pytest.mark.parametrize("family", [f for f in FAMILIES.names() if f != "external"])
X = torch.rand(1, 3, 19, 26, generator=torch.Generator().manual_seed(0))


def _model(family="resnet", size="tiny", seed=0, **kwargs):
    torch.manual_seed(seed)
    model = build(family, size, **kwargs)
    with torch.no_grad():  # make every tensor non-trivial (NAFNet's beta/gamma start at zero)
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _out(model, x=X):
    with torch.no_grad():
        return model(x)


def _run_dir(tmp_path: Path, model, name="run") -> Path:
    run = tmp_path / name
    sha = save_weights(model, run / "model.safetensors")
    (run / "run.json").write_text(json.dumps({"status": "done", "model": model.spec, "weights_sha256": sha}))
    return run


def _error(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text, "errors are one line"
    return text


def _touch(path: str) -> None:
    Path(path).touch()


class _Payload:
    """An object whose unpickling would run code: weights-only loading must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


# ------------------------------------------------------------------------------------------ round trips


@FAMILY
def test_safetensors_round_trip_is_exact(family, tmp_path):
    direct = {"global_residual": False} if "global_residual" in FAMILIES.get(family).sizes["tiny"] else {}
    model = _model(family, **direct)
    path = tmp_path / "w" / "model.safetensors"
    sha = save_weights(model, path)
    assert sha == sha256_file(path)
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.spec == model.spec
    assert torch.equal(_out(loaded), _out(model))
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp file left


@FAMILY
def test_run_directory_round_trip_verifies_sha(family, tmp_path):
    model = _model(family)
    loaded = load_model(_run_dir(tmp_path, model))
    assert torch.equal(_out(loaded), _out(model))
    assert all(not p.requires_grad or p.device.type == "cpu" for p in loaded.parameters())


def test_metadata_is_recorded(tmp_path):
    from safetensors import safe_open

    model = _model("swinir", depths=[1, 1])
    save_weights(model, tmp_path / "m.safetensors", metadata={"step": 7, "note": "hello"})
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["probe.format"] == "1"
    assert meta["probe.family"] == "swinir" and meta["probe.size"] == "tiny"
    assert json.loads(meta["probe.kwargs"]) == {"depths": [1, 1]}
    assert meta["step"] == "7" and meta["note"] == "hello"
    assert load_model(tmp_path / "m.safetensors").hparams["depths"] == [1, 1]


def test_reserved_metadata_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="probe.family"):
        save_weights(_model(), tmp_path / "m.safetensors", metadata={"probe.family": "x"})


def test_shared_tensors_are_saved(tmp_path):
    model = _model()
    model.alias = model.head  # the same parameters under two names
    save_weights(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors", strict=False)  # 'alias.*' are unexpected keys
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_overwrite_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "model.safetensors"
    first = save_weights(_model(seed=0), path)
    second = save_weights(_model(seed=1), path)
    assert first != second == sha256_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_kwargs_and_size_override_recorded_spec(tmp_path):
    model = _model("resnet")
    path = tmp_path / "model.safetensors"
    save_weights(model, path)
    flipped = load_model(path, global_residual=False)
    assert flipped.global_residual is False and flipped.spec["kwargs"] == {"global_residual": False}
    assert torch.allclose(_out(flipped), X - _out(model), atol=1e-6)


def test_loading_does_not_shift_the_callers_random_stream(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(_model("unet"), path)
    torch.manual_seed(11)
    load_model(path)
    after = torch.rand(3)
    torch.manual_seed(11)
    assert torch.equal(after, torch.rand(3))


# -------------------------------------------------------------------------------------------- errors


def test_missing_file_and_not_a_run_dir(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in _error(info) and "no such file" in _error(info)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "empty")
    assert "empty" in _error(info) and "model.safetensors" in _error(info)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in _error(info) and "truncated or corrupt" in _error(info)


def test_truncated_file_in_run_dir_is_a_sha_mismatch(tmp_path):
    run = _run_dir(tmp_path, _model())
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as info:
        load_model(run)
    assert str(weights) in _error(info) and "sha256 mismatch" in _error(info)


def test_corrupted_bytes_are_caught_by_run_json_sha(tmp_path):
    run = _run_dir(tmp_path, _model())
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # inside the tensor data: the header still parses
    weights.write_bytes(bytes(data))
    for target in (run, weights):  # run dir, or the file itself with its sibling run.json
        with pytest.raises(CheckpointError) as info:
            load_model(target)
        assert str(weights) in _error(info) and "sha256 mismatch" in _error(info)


def test_corrupted_bytes_without_run_json_are_caught_by_the_embedded_digest(tmp_path):
    path = tmp_path / "alone.safetensors"
    save_weights(_model(), path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in _error(info) and "sha256 mismatch" in _error(info)


def test_wrong_family(tmp_path):
    run = _run_dir(tmp_path, _model("unet"))
    for target in (run, run / "model.safetensors"):
        with pytest.raises(CheckpointError) as info:
            load_model(target, family="resnet")
        text = _error(info)
        assert "family mismatch" in text and "'unet'" in text and "'resnet'" in text
        assert str(run) in text


def test_unknown_family_names_the_file(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "w.pth", family="nosuchnet")
    assert "w.pth" in _error(info) and "nosuchnet" in _error(info)


def test_mismatched_shapes_name_the_keys(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(_model("resnet", "tiny"), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, size="small")
    text = _error(info)
    assert str(path) in text and "resnet/small" in text
    assert "shape mismatch" in text and "head.weight: file [16, 3, 3, 3] vs model [32, 3, 3, 3]" in text
    assert "more" in text  # more than three offending keys are counted, not all listed
    assert "missing keys" in text and "blocks.4.conv1.weight" in text  # tiny has 4 blocks, small 8


def test_mismatched_keys_name_missing_and_unexpected(tmp_path):
    state = _model("resnet").state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["tail.bias"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "w.pth", family="resnet", size="tiny")
    text = _error(info)
    assert "w.pth" in text and "1 missing key (tail.bias)" in text and "1 unexpected key (extra.weight)" in text
    with pytest.raises(CheckpointError, match=r"only 21/22 model tensors.*tail\.bias.*initial values"):
        load_model(tmp_path / "w.pth", family="resnet", size="tiny", strict=False)  # would keep a random bias
    with pytest.warns(UserWarning, match=r"loaded 21/22 tensors.*kept initial values \(allowed\): tail\.bias"):
        loose = load_model(tmp_path / "w.pth", family="resnet", size="tiny", strict=False,
                           allow_missing=["tail.*"])
    assert torch.equal(loose.head.weight, state["head.weight"])
    assert loose.load_report.matched == 21 and loose.load_report.unexpected == ["extra.weight"]


# -------------------------------------------------------------------------------------- foreign files


def test_basicsr_pth_prefers_params_ema(tmp_path):
    ema, raw = _model("unet", seed=1), _model("unet", seed=2)
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "net_g.pth")
    loaded = load_model(tmp_path / "net_g.pth", family="unet", size="tiny")
    assert torch.equal(_out(loaded), _out(ema))
    torch.save({"params": raw.state_dict()}, tmp_path / "net_g_params.pth")
    assert torch.equal(_out(load_model(tmp_path / "net_g_params.pth", family="unet")), _out(raw))


def test_plain_state_dict_module_prefix_and_size_inference(tmp_path):
    model = _model("resnet", "small")
    plain = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save(plain, tmp_path / "dp.pt")
    loaded = load_model(tmp_path / "dp.pt", family="resnet")  # size found from the shapes
    assert loaded.size == "small" and torch.equal(_out(loaded), _out(model))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "lightning.pth")
    assert torch.equal(_out(load_model(tmp_path / "lightning.pth", family="resnet")), _out(model))


def test_foreign_file_needs_a_family(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "w.pth")
    assert "w.pth" in _error(info) and "family=" in _error(info)


def test_foreign_pickle_with_an_object_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"params": _model().state_dict(), "extra": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "evil.pth", family="resnet")
    text = _error(info)
    assert "evil.pth" in text and "refused" in text and "_touch" in text
    assert not marker.exists()


def test_corrupt_and_truncated_pth(tmp_path):
    torch.save(_model().state_dict(), tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all" * 4)
    for name in ("cut.pth", "junk.pth"):
        with pytest.raises(CheckpointError) as info:
            load_model(tmp_path / name, family="resnet")
        assert name in _error(info) and "checkpoint" in _error(info)


def test_pth_without_a_state_dict(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "meta.pth", family="resnet")
    assert "meta.pth" in _error(info) and "no state dict" in _error(info)
