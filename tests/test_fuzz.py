"""Property-based tests (hypothesis, derandomized, few examples): bad input is one clear ProbeError, never a raw
traceback (issue 13 kind 8) — train configs, study specs, image files and folders, checkpoint containers."""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import CheckpointError, ConfigError, DataError, ProbeError

FUZZ = settings(max_examples=30, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
)


def _leaf_keys(table: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in table.items():
        path = f"{prefix}{k}"
        keys += _leaf_keys(v, path + ".") if isinstance(v, dict) and v else [path]
    return keys


CONFIG_KEYS = sorted(set(_leaf_keys(TINY_CONFIG)) | {
    "train.lr", "train.loss", "train.schedule", "train.warmup", "train.min_lr_ratio", "train.ema",
    "train.grad_clip", "train.val_every", "eval.seed", "eval.patch", "eval.background", "data.background_options",
    "model.kwargs", "degradation.type", "eval.splits", "model", "data", "train", "eval", "degradation", "axes",
    "eval.splits.ood", "model.n_blocks", "degradation.preset"})


def _set(raw: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        raw = raw.setdefault(p, {})
    raw[leaf] = value


def _names_key(message: str, key: str) -> bool:
    parts = key.split(".")
    return any(p in message for p in parts[-2:])


@pytest.mark.parametrize("key", CONFIG_KEYS)
@settings(FUZZ, max_examples=12)
@given(value=ANY_VALUE)
def test_train_config_value_is_accepted_or_one_config_error_naming_the_key(key, value):
    from probe.train.config import TrainConfig

    raw = copy.deepcopy(TINY_CONFIG)
    _set(raw, key, value)
    try:
        TrainConfig.from_dict(raw)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and _names_key(msg, key), f"{key}={value!r}: {msg}"


@FUZZ
@given(section=st.sampled_from(["", "model.", "data.", "train.", "eval.", "degradation."]),
       name=st.from_regex(r"[a-z_]{1,10}", fullmatch=True), value=ANY_VALUE)
def test_unknown_train_config_keys_are_named(section, name, value):
    from probe.train.config import TrainConfig

    raw = copy.deepcopy(TINY_CONFIG)
    _set(raw, section + "zz" + name, value)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(raw)
    assert "\n" not in str(info.value) and ("zz" + name) in str(info.value)


STUDY_BASE = {"study": {"name": "fz", "probes": ["generalization"]},
              "base": copy.deepcopy(TINY_CONFIG), "axes": {"n_backgrounds": [1, 2]}}
STUDY_KEYS = ["study.name", "study.probes", "study.probe_params", "study.probe_params.cka", "study.probe_params.zz",
              "study.probe_params.cka.kernel", "study.probe_params.cka.zz", "study.description", "axes",
              "axes.n_backgrounds", "axes.seed", "axes.data.patch", "axes.zz", "cells", "base", "base.seed",
              "base.data.n_backgrounds", "zz"]


@pytest.mark.parametrize("key", STUDY_KEYS)
@settings(FUZZ, max_examples=10)
@given(value=ANY_VALUE)
def test_study_spec_is_accepted_or_one_config_error(key, value):
    from probe.study import load_study

    raw = copy.deepcopy(STUDY_BASE)
    _set(raw, key, value)
    try:
        spec = load_study(raw, source="fz.toml")
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and "fz.toml" in msg, msg
        return
    assert spec.cells()  # a spec that loads has cells whose configs load


# ------------------------------------------------------------------------------------------------ images
def _valid_image_bytes(kind: str, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    if kind == "tiff16":
        import tifffile

        tifffile.imwrite(buf, (rng.random((24, 20)) * 65535).astype(np.uint16))
    else:
        img = Image.fromarray((rng.random((24, 20, 3)) * 255).astype(np.uint8))
        img.save(buf, format={"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF"}[kind])
    return buf.getvalue()


SUFFIX = {"png": ".png", "jpeg": ".jpg", "bmp": ".bmp", "tiff": ".tif", "tiff16": ".tiff"}


@st.composite
def damaged_images(draw):
    kind = draw(st.sampled_from(sorted(SUFFIX)))
    data = bytearray(_valid_image_bytes(kind, draw(st.integers(0, 3))))
    how = draw(st.sampled_from(["truncate", "flip", "garbage", "empty"]))
    if how == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
    elif how == "garbage":
        data = bytearray(draw(st.binary(min_size=1, max_size=300)))
    else:
        data = bytearray()
    return kind, bytes(data)


@FUZZ
@given(case=damaged_images())
def test_damaged_image_reads_or_is_one_data_error_naming_the_file(case):
    from probe.data.images import read_image

    kind, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img{SUFFIX[kind]}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                arr = read_image(path)
            except DataError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc)
                return
        assert arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.float32
        assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1


@settings(max_examples=10, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(damaged_images(), min_size=1, max_size=4), n_good=st.integers(0, 3))
def test_folder_with_damaged_files_raises_naming_one_or_skips(cases, n_good):
    from probe.data.backgrounds import make_background

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(n_good):
            (root / f"good{i}.png").write_bytes(_valid_image_bytes("png", 10 + i))
        for i, (kind, data) in enumerate(cases):
            (root / f"bad{i}{SUFFIX[kind]}").write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = make_background("folder", 16, root=root, test_fraction=0, size=16, on_error="skip")
            try:
                images = src.images(n_good)
                assert images.shape == (n_good, 3, 16, 16) and torch.isfinite(images).all()
            except DataError as exc:  # two damaged files can still decode to the same pixels as a good one
                assert "usable" in str(exc)
            strict = make_background("folder", 16, root=root, test_fraction=0, size=16)
            try:
                strict.images(len(cases) + n_good)
            except DataError as exc:
                msg = str(exc)
                assert "\n" not in msg and (str(root) in msg)


# ----------------------------------------------------------------------------------------- checkpoints
def _tiny_state() -> dict[str, torch.Tensor]:
    from probe.models import build

    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in build("resnet", "tiny").state_dict().items()}


STATE = _tiny_state()


@st.composite
def containers(draw):
    prefix = draw(st.sampled_from(["", "module.", "net.", "model.", "module.module."]))
    dtype = draw(st.sampled_from([None, torch.float16, torch.bfloat16, torch.float64]))
    state = {prefix + k: (v if dtype is None else v.to(dtype)) for k, v in STATE.items()}
    drop = draw(st.integers(0, 2))
    for key in sorted(state)[:drop]:
        del state[key]
    if draw(st.booleans()):
        state[prefix + "extra.weight"] = torch.zeros(2)
    obj = state
    for _ in range(draw(st.integers(0, 3))):
        wrapper = draw(st.sampled_from(["params_ema", "params", "state_dict", "model", "net", "weights"]))
        obj = {wrapper: obj}
        if draw(st.booleans()):
            obj["epoch"] = draw(st.integers(0, 9))
        if draw(st.booleans()):
            obj["meta"] = {"note": draw(st.text(max_size=4))}
    return obj


@FUZZ
@given(obj=containers(), truncate=st.one_of(st.none(), st.floats(0.0, 0.99)))
def test_checkpoint_container_loads_right_or_one_clear_error(obj, truncate):
    from probe.models.checkpoint import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.pth"
        torch.save(obj, path)
        if truncate is not None:
            data = path.read_bytes()
            path.write_bytes(data[:int(len(data) * truncate)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = load_model(path, family="resnet", size="tiny")
            except (CheckpointError, ConfigError) as exc:
                assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
                return
            except ProbeError as exc:  # any other probe error must still be one line
                assert "\n" not in str(exc)
                return
    loaded = model.state_dict()
    for key in STATE:  # a model that loads holds the file's weights, never random ones
        stored = [v for k, v in _flatten_tensors(obj).items() if k.endswith(key)]
        assert stored, f"loaded although {key} is not in the file"
        torch.testing.assert_close(loaded[key].float(), stored[0].to(loaded[key].dtype).float())


def _flatten_tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten_tensors(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    elif isinstance(obj, torch.Tensor):
        out[prefix] = obj
    return out
