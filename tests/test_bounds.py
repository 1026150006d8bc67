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
