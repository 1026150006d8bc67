"""Real paired test sets: every naming convention, D = O − B and the masks, broken pairs, named splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.data.pairs import THRESHOLD, find_pairs, load_pairs
from probe.errors import ConfigError, DataError
from probe.probes.evalfolders import eval_data_from_folders, parse_folder_args


def _pair(seed: int, h: int = 20, w: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = (rng.random((h, w, 3)) * 150).astype(np.uint8)
    streak = np.zeros((h, w, 1))
    streak[:, seed % w] = 100  # one vertical streak of +100/255 per image
    return np.clip(clean + streak, 0, 255).astype(np.uint8), clean


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.mark.parametrize("deg,clean,deg_name,clean_name", [
    ("input", "target", "{i:03d}.png", "{i:03d}.png"),
    ("rain", "norain", "rain-{i}.png", "norain-{i}.png"),       # Rain100L/H naming
    ("data", "gt", "{i}.png", "{i}.png"),
    ("low", "high", "{i}.png", "{i}.png"),
    ("Input", "GT", "{i}_rain.png", "{i}_clean.png"),           # case-insensitive folders, tagged stems
])
def test_subfolder_conventions(tmp_path, deg, clean, deg_name, clean_name):
    for i in range(3):
        o, c = _pair(i)
        _save(tmp_path / deg / deg_name.format(i=i), o)
        _save(tmp_path / clean / clean_name.format(i=i), c)
    found = find_pairs(tmp_path)
    pairs = [(p.degraded, p.clean) for p in found.pairs]
    assert found.layout == "subfolders" and f"{deg}/ (degraded)" in found.why and len(pairs) == 3
    assert all(a.parent.name == deg and b.parent.name == clean for a, b in pairs)
    batch, info = load_pairs(tmp_path, patch=None)
    assert batch.degraded.shape == (3, 3, 20, 24) and info["n_images"] == 3
    for i, (a, b) in enumerate(pairs):  # each input is matched with *its* clean partner
        index = int("".join(ch for ch in a.stem if ch.isdigit()))
        assert int("".join(ch for ch in b.stem if ch.isdigit())) == index
        o, c = _pair(index)
        assert torch.allclose(batch.clean[i], torch.from_numpy(c).permute(2, 0, 1).float() / 255)
        assert torch.allclose(batch.degraded[i], torch.from_numpy(o).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("deg_name,clean_name", [("rain-{i}.png", "norain-{i}.png"), ("{i}_rain.png", "{i}_clean.png"),
                                                 ("img{i}_input.png", "img{i}_gt.png")])
def test_single_folder_name_pairs(tmp_path, deg_name, clean_name):
    for i in range(2):
        o, c = _pair(i)
        _save(tmp_path / deg_name.format(i=i), o)
        _save(tmp_path / clean_name.format(i=i), c)
    found = find_pairs(tmp_path)
    pairs = [(p.degraded, p.clean) for p in found.pairs]
    assert found.layout == "name_tags" and len(pairs) == 2
    assert all(a.name == deg_name.format(i=i) and b.name == clean_name.format(i=i) for i, (a, b) in enumerate(pairs))


def test_csv_fallback_and_layer_and_masks(tmp_path):
    o, c = _pair(5)
    _save(tmp_path / "x" / "a.png", o)
    _save(tmp_path / "y" / "b.png", c)
    (tmp_path / "pairs.csv").write_text("input,target\nx/a.png,y/b.png\n")
    batch, info = load_pairs(tmp_path, patch=None)
    assert info["layout"] == "pair_list" and info["pairs"] == [["x/a.png", "y/b.png"]]
    assert torch.allclose(batch.layer, batch.degraded - batch.clean)
    expected = torch.zeros(20, 24)
    expected[:, 5] = 1  # exactly the streak column exceeds the threshold
    assert torch.equal(batch.mask[0, 0], expected)
    assert float(batch.soft_mask.max()) == pytest.approx(1.0) and float(batch.soft_mask.min()) == 0.0
    assert THRESHOLD == pytest.approx(50 / 255)


def test_broken_pairs_name_the_files_or_are_skipped(tmp_path):
    for i in range(3):
        o, c = _pair(i)
        _save(tmp_path / "rain" / f"{i}.png", o)
        if i != 1:
            _save(tmp_path / "norain" / f"{i}.png", c)
    (tmp_path / "rain" / "3.png").write_bytes(b"not a png")
    _save(tmp_path / "norain" / "3.png", _pair(3)[1])
    _save(tmp_path / "rain" / "4.png", _pair(4, 20, 24)[0])
    _save(tmp_path / "norain" / "4.png", _pair(4, 16, 16)[1])
    with pytest.raises(DataError) as info:
        load_pairs(tmp_path)
    assert "1.png: no clean partner" in str(info.value) and "--skip-broken" in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch, meta = load_pairs(tmp_path, patch=16, on_error="skip")
    texts = " | ".join(str(w.message) for w in caught)
    assert "1.png: no clean partner" in texts and "3.png" in texts and "differ in size" in texts
    assert len(batch) == 2 and [a for a, _ in meta["pairs"]] == ["rain/0.png", "rain/2.png"]
    assert meta["skipped"] == 3
    (tmp_path / "norain" / "1.png").unlink(missing_ok=True)
    with pytest.raises(DataError, match="no image pairs"):
        find_pairs(tmp_path / "rain")
    with pytest.raises(DataError, match="no such folder"):
        find_pairs(tmp_path / "missing")


def test_several_folders_become_named_splits_of_different_sizes(tmp_path):
    for name, count in (("a", 3), ("b", 2)):
        for i in range(count):
            o, c = _pair(i + 10 * count, 40, 40)
            _save(tmp_path / name / "input" / f"{i}.png", o)
            _save(tmp_path / name / "target" / f"{i}.png", c)
    splits = parse_folder_args([f"id={tmp_path / 'a'}", f"ood={tmp_path / 'b'}"])
    data = eval_data_from_folders(splits, patch=32)
    assert list(data.splits) == ["id", "ood"] and len(data.splits["id"]) == 3 and len(data.splits["ood"]) == 2
    assert data.splits["id"].degraded.shape[-2:] == (32, 32) and data.info["source"] == "paired_folders"
    from probe.probes.decomposition import Decomposition
    from probe.probes.generalization import Generalization

    identity = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    gen = Generalization().run(identity, data)
    rows = {(m["split"], m["metric"]): m["value"] for m in gen.metrics}
    assert rows[("ood", "psnr")] == pytest.approx(rows[("ood", "psnr_input")])  # identity restores nothing
    dec = Decomposition().run(identity, data)
    removal = [m["value"] for m in dec.metrics if m["metric"] == "removal_ratio"]
    assert removal == pytest.approx([0.0, 0.0], abs=1e-9)
    assert np.isnan(dec.arrays["per_image"].sel(split="ood").values[2]).all()  # shorter split: NaN-padded
    with pytest.raises(ConfigError, match="NAME=DIR"):
        parse_folder_args(["=x"])
    assert parse_folder_args([str(tmp_path / "a")]) == {"id": str(tmp_path / "a")}


def test_folders_of_different_image_sizes_share_one_crop(tmp_path):
    for name, size in (("big", 48), ("small", 20)):
        for i in range(2):
            o, c = _pair(i, size, size)
            _save(tmp_path / name / "rain" / f"{i}.png", o)
            _save(tmp_path / name / "norain" / f"{i}.png", c)
    data = eval_data_from_folders({"id": tmp_path / "big", "ood": tmp_path / "small"}, patch=32)
    assert {tuple(b.degraded.shape[-2:]) for b in data.splits.values()} == {(20, 20)}
    assert data.info["splits"]["id"]["cropped_to"] == [20, 20]
    from probe.probes.decomposition import Decomposition

    result = Decomposition(n_examples=1).run(torch.nn.Identity(), data)
    assert result.arrays["examples"].shape[-2:] == (20, 20)

