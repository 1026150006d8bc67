"""Real-size bounds (issue 21, item 6): the pixels-per-forward-pass bound and the image subset of the expensive
probes are applied, recorded in the arrays' attrs and printed in the load summary; below the bound results and
attrs are as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import ConfigError
from probe.measure import measure
from probe.probes import PROBES
from probe.probes.bounds import image_choice, images_per_forward
from probe.probes.evalfolders import eval_data_from_folders
from probe.store import read_array


def _pairs(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "rain").mkdir(parents=True)
    (root / "norain").mkdir(parents=True)
    for i in range(n):
        clean = (rng.random((24, 32, 3)) * 160).astype(np.uint8)
        rain = clean.copy()
        rain[:, (5 * i + 3) % 32] = 250
        Image.fromarray(rain).save(root / "rain" / f"rain-{i}.png")
        Image.fromarray(clean).save(root / "norain" / f"norain-{i}.png")
    return root


def test_images_per_forward_rule(monkeypatch):
    assert images_per_forward(32, (128, 128)) == (32, None)         # default study patches: unchanged
    assert images_per_forward(16, (321, 481))[0] == (1 << 20) // (321 * 481) == 6
    monkeypatch.setenv("PROBE_FORWARD_PIXELS", "1000")
    n, why = images_per_forward(8, (24, 32), minimum=4)
    assert n == 4 and "lowered to 4" in why and "1000 pixels" in why
    monkeypatch.setenv("PROBE_FORWARD_PIXELS", "lots")
    with pytest.raises(ConfigError, match="PROBE_FORWARD_PIXELS"):
        images_per_forward(8, (24, 32))
    assert image_choice(2, 6, "n_images", 2).startswith("first 2 of 6")
    assert image_choice(6, 6, "n_images", None).startswith("all 6")


NET = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.c = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return x - self.c(self.b(self.a(x)))
"""


def _arch(tmp_path: Path):
    import importlib.util

    path = tmp_path / "tiny_arch.py"
    path.write_text(NET)
    spec = importlib.util.spec_from_file_location("tiny_arch_bounds", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    return f"{path}:Tiny", mod.Tiny(width=4).eval()


@pytest.fixture()
def net(tmp_path):
    return _arch(tmp_path)[1]


LAYERS = {"layers": ["a", "b"]}


@pytest.mark.parametrize("name,params", [
    ("activations", {"n_images": 6, "batch_size": 6, "sensitivity": False, **LAYERS}),
    ("cka", {"n_images": 8, "batch_size": 8, "convention": "pooled", **LAYERS}),
    ("ddr", {"n_backgrounds": 4, "batch_size": 16, **LAYERS}),
    ("attribution", {"n_images": 2, "steps": 4, "internal_batch_size": 8}),
    ("cem", {"n_images": 2, "block": 8, "roi": 8, "internal_batch_size": 8})])
def test_probe_bound_applied_recorded_and_same_numbers(tmp_path, monkeypatch, net, name, params):
    data = eval_data_from_folders({"test": _pairs(tmp_path / "pairs", 8)}, patch=None)
    free = PROBES.get(name)(**params).run(net, data)
    monkeypatch.setenv("PROBE_FORWARD_PIXELS", str(4 * 24 * 32))   # 4 images of 24 x 32 per forward
    bounded = PROBES.get(name)(**params).run(net, data)
    for key, arr in free.arrays.items():
        assert "batch_bound" not in arr.attrs
        if "batch_bound" in bounded.arrays[key].attrs:
            assert "lowered to 4 images of 24x32" in bounded.arrays[key].attrs["batch_bound"]
        np.testing.assert_allclose(np.asarray(bounded.arrays[key].values, float),
                                   np.asarray(arr.values, float), rtol=1e-4, atol=1e-5)
    attrs = [a.attrs for a in bounded.arrays.values()]
    assert any("batch_bound" in a for a in attrs)
    used = params.get("n_images", params.get("n_backgrounds"))
    assert any(str(a.get("images", "")).startswith(f"first {used} of 8") or
               (used == 8 and str(a.get("images", "")).startswith("all 8")) for a in attrs)


def test_measure_prints_and_stores_the_choice(tmp_path, monkeypatch):
    arch, tiny = _arch(tmp_path)
    ckpt = tmp_path / "net_g.pth"
    torch.save({"params": tiny.state_dict()}, ckpt)
    pairs = _pairs(tmp_path / "pairs", 6)
    monkeypatch.setenv("PROBE_FORWARD_PIXELS", str(4 * 24 * 32))
    out = tmp_path / "reports" / "results.h5"
    summary = measure(ckpt, probes=["cka", "generalization"], arch=arch, arch_kwargs={"width": 4},
                      eval_folders={"test": str(pairs)}, eval_patch=0, out=out, show_progress=False)
    assert not summary["failed"]
    text = "\n".join(summary["eval_data"])
    assert "cka: all 6 images per split (n_images=32)" in text
    assert "cka: batch_size 32 lowered to 4 images of 24x32" in text and "minibatch estimate" in text
    assert "generalization: batch_size 16 lowered to 4" in text
    arr = read_array(out, summary["model_id"], "cka", "layer_cka")
    assert arr.attrs["images"].startswith("all 6") and "minibatch estimate" in arr.attrs["batch_bound"]


def test_cem_maps_large_images_on_a_crop_around_the_roi(tmp_path, net):
    """cem's context bound: images larger than `context` are mapped on a crop centred on the ROI, recorded;
    for a local network the ROI's restoration is the same as on the whole image; small images are whole."""
    rng = np.random.default_rng(1)
    root = tmp_path / "big"
    (root / "rain").mkdir(parents=True)
    (root / "norain").mkdir(parents=True)
    for i in range(2):
        clean = (rng.random((64, 96, 3)) * 160).astype(np.uint8)
        rain = clean.copy()
        rain[:, 20 + 30 * i] = 250
        Image.fromarray(rain).save(root / "rain" / f"rain-{i}.png")
        Image.fromarray(clean).save(root / "norain" / f"norain-{i}.png")
    data = eval_data_from_folders({"test": root}, patch=None)
    params = {"n_images": 2, "block": 8, "roi": 8, "faithfulness": False}
    whole = PROBES.get("cem")(**params, context=None).run(net, data)
    crop = PROBES.get("cem")(**params, context=32).run(net, data)
    assert whole.arrays["cem"].shape[-2:] == (8, 12) and crop.arrays["cem"].shape[-2:] == (4, 4)
    assert "context" not in whole.arrays["cem"].attrs
    assert crop.arrays["cem"].attrs["context"].startswith("32x32 crop centred on the ROI of each 64x96 image")
    ctx = crop.arrays["context_box"].values.reshape(-1, 4)
    win = crop.arrays["window_box"].values.reshape(-1, 4)
    full = whole.arrays["window_box"].values.reshape(-1, 4)
    assert (ctx[:, 2:] == 32).all() and (ctx[:, 0] >= 0).all() and (ctx[:, 0] + 32 <= 64).all()
    assert (ctx[:, 1] + 32 <= 96).all()
    np.testing.assert_array_equal(win[:, :2] + ctx[:, :2], full[:, :2])  # the same ROI, in crop coordinates
    # three 3x3 convolutions see 3 px: the ROI (>= 3 px inside the crop) is restored exactly as on the whole image
    get = {m: k for k, m in enumerate(whole.arrays["image_metrics"].coords["metric"].values)}
    np.testing.assert_allclose(crop.arrays["image_metrics"].values[..., get["roi_psnr"]],
                               whole.arrays["image_metrics"].values[..., get["roi_psnr"]], rtol=1e-5)
    assert np.nanmax(crop.arrays["image_metrics"].values[..., get["effect_reach"]]) <= 32
    small = eval_data_from_folders({"test": _pairs(tmp_path / "small", 2)}, patch=None)  # 24 x 32 <= 128
    default = PROBES.get("cem")(**params).run(net, small)
    np.testing.assert_array_equal(default.arrays["cem"].values,
                                  PROBES.get("cem")(**params, context=None).run(net, small).arrays["cem"].values)
    with pytest.raises(ConfigError, match="context"):
        PROBES.get("cem")(context=0)


def test_probe_params_from_the_cli_reach_the_probe_and_bad_ones_are_one_line(tmp_path, capsys, monkeypatch):
    from probe.cli import main

    monkeypatch.setenv("PROBE_FORWARD_PIXELS", str(64 * 16 * 16))  # 64 crops of 16 x 16, not 64 whole images

    arch, tiny = _arch(tmp_path)
    ckpt = tmp_path / "net_g.pth"
    torch.save({"params": tiny.state_dict()}, ckpt)
    pairs = _pairs(tmp_path / "pairs", 2)
    out = tmp_path / "reports" / "results.h5"
    base = ["measure", str(ckpt), "--arch", arch, "--arch-kwargs", '{"width": 4}', "--eval-folder",
            f"test={pairs}", "--eval-patch", "0", "--out", str(out), "-q", "--probes", "cem"]
    assert main([*base, "--probe-params", '{"cem": {"context": 16, "n_images": 1, "block": 4, "roi": 4, '
                 '"faithfulness": false}}']) == 0
    printed = capsys.readouterr().out
    assert "cem: maps on a 16x16 crop centred on the ROI of each 24x32 image (context=16)" in printed
    assert "cem: internal_batch_size" not in printed  # 64 crops of 16x16 per forward: under the bound
    arr = read_array(out, "net_g", "cem", "cem")
    assert arr.shape[-2:] == (4, 4) and arr.attrs["context"].startswith("16x16 crop")
    for bad, said in (('{"cem": {"context": 0}}', "cem: 'context' must be an integer >= 1"),
                      ('{"nope": {}}', "'nope': no such probe"),
                      ('{"cem": 3}', "must be {probe: {parameter: value}}"),
                      ("{cem", "--probe-params: not valid JSON")):
        assert main([*base, "--probe-params", bad]) == 2
        assert said in capsys.readouterr().err
