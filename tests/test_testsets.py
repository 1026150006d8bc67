"""Real test sets as distributed: every published layout built in a temporary folder (tiny images), detected
with the right pairs and a reason, many-to-one sets one pair per rainy image, broken pairs, refusals of ambiguous
and mispairable folders, the named layouts (side_by_side, sorted), the CLI flag and the model-card key."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.data.layouts import natural_key
from probe.data.pairs import find_pairs, load_pairs, pair_record
from probe.errors import ConfigError, DataError
from probe.probes.evalfolders import eval_data_from_folders, parse_layout_args, summary_lines

H, W = 12, 16


def _clean(key: str) -> np.ndarray:
    """A clean image that depends on ``key`` only (so a pairing can be checked from the pixels)."""
    rng = np.random.default_rng(abs(hash(key)) % 2**32)
    return (rng.random((H, W, 3)) * 120).astype(np.uint8)


def _rainy(key: str, k: int = 0) -> np.ndarray:
    out = _clean(key).astype(np.int16)
    out[:, (3 * k + 1) % W] += 100  # one bright streak, column depends on the rainy variant k
    return np.clip(out, 0, 255).astype(np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=100) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)


def _check(root: Path, expect: str, n: int, why: str, **kwargs) -> dict:
    """Detect (or apply) the layout, check its name, count, reason and that every pair is key-consistent."""
    batch, info = load_pairs(root, patch=None, **kwargs)
    assert info["layout"] == expect, info["why"]
    assert why in info["why"], info["why"]
    assert info["n_images"] == n == len(info["pairs"]) == len(batch)
    d = (batch.degraded - batch.clean).numpy()
    assert (d >= -0.03).all(), "a rainy image paired with another scene's clean image"  # jpg noise allowed
    assert (d.max(axis=(1, 2, 3)) > 0.3).all()  # every pair carries its streak
    return info


# ------------------------------------------------------------------------------------------ the layouts
def test_rain100_one_folder_jorder(tmp_path):
    for i in range(1, 4):
        _save(tmp_path / f"rain-{i:03d}.png", _rainy(str(i)))
        _save(tmp_path / f"norain-{i:03d}.png", _clean(str(i)))
    info = _check(tmp_path, "name_tags", 3, "one folder of tagged names")
    assert info["pairs"][0] == ["rain-001.png", "norain-001.png"]


def test_rain100_prenet_clean_beside_rainy_folder(tmp_path):
    for i in range(1, 4):  # PReNet: datasets/test/Rain100H/norain-001.png and rainy/rain-001.png
        _save(tmp_path / "rainy" / f"rain-{i:03d}.png", _rainy(str(i)))
        _save(tmp_path / f"norain-{i:03d}.png", _clean(str(i)))
    info = _check(tmp_path, "subfolders", 3, "rainy/ (degraded) and the folder itself (clean)")
    assert info["pairs"][2] == ["rainy/rain-003.png", "norain-003.png"]


def test_rain100_rain_norain_folders(tmp_path):
    for i in range(1, 4):
        _save(tmp_path / "rain" / f"rain-{i}.png", _rainy(str(i)))
        _save(tmp_path / "norain" / f"norain-{i}.png", _clean(str(i)))
    _check(tmp_path, "subfolders", 3, "'tags'")


def test_rain200_suffixed_names_in_a_nested_folder(tmp_path):
    for i in (1, 2, 10):  # Rain200H/test/rain/X2/norain-1x2.png ↔ norain/norain-1.png
        _save(tmp_path / "rain" / "X2" / f"norain-{i}x2.png", _rainy(str(i)))
        _save(tmp_path / "norain" / f"norain-{i}.png", _clean(str(i)))
    info = _check(tmp_path, "subfolders", 3, "'scale suffix'")
    assert "rain/X2/" in info["why"]
    assert [p[0] for p in info["pairs"]] == ["rain/X2/norain-1x2.png", "rain/X2/norain-2x2.png",
                                             "rain/X2/norain-10x2.png"]  # natural order


@pytest.mark.parametrize("deg,clean,ext", [("rainy_image", "ground_truth", ".jpg"), ("rain", "norain", ".jpg")])
def test_rain1400_many_rainy_per_clean(tmp_path, deg, clean, ext):
    for i in (901, 902):
        _save(tmp_path / clean / f"{i}{ext}", _clean(str(i)))
        for k in range(1, 15):
            _save(tmp_path / deg / f"{i}_{k}{ext}", _rainy(str(i), k))
    info = _check(tmp_path, "subfolders", 28, "many rainy per clean")
    assert info["pairs"][:2] == [[f"{deg}/901_1{ext}", f"{clean}/901{ext}"], [f"{deg}/901_2{ext}", f"{clean}/901{ext}"]]
    assert sum(p[1] == f"{clean}/902{ext}" for p in info["pairs"]) == 14  # each rainy image is one pair


@pytest.mark.parametrize("layout", ["one folder", "subfolders"])
def test_rain12(tmp_path, layout):
    for i in range(1, 4):
        if layout == "one folder":  # Li et al.'s zip: 001_in.png / 001_GT.png
            _save(tmp_path / f"{i:03d}_in.png", _rainy(str(i)))
            _save(tmp_path / f"{i:03d}_GT.png", _clean(str(i)))
        else:  # PReNet's copy: rainy/1.png, groundtruth/1.png
            _save(tmp_path / "rainy" / f"{i}.png", _rainy(str(i)))
            _save(tmp_path / "groundtruth" / f"{i}.png", _clean(str(i)))
    _check(tmp_path, "name_tags" if layout == "one folder" else "subfolders", 3, "")


@pytest.mark.parametrize("name", ["Rain100H", "Test2800", "RealRain-1k-H"])
def test_rain13k_and_realrain_input_target(tmp_path, name):
    root = tmp_path / name
    for i in ("1", "901_1", "901_2"):  # Test2800 repeats the clean image under each rainy name
        _save(root / "input" / f"{i}.png", _rainy(i.split("_")[0], int(i[-1])))
        _save(root / "target" / f"{i}.png", _clean(i.split("_")[0]))
    _check(root, "subfolders", 3, "'same name'")


def test_spa_data_gt_suffixed_names(tmp_path):
    for i in range(3):  # real_test_1000/rain/000.png ↔ gt/000gt.png
        _save(tmp_path / "rain" / f"{i:03d}.png", _rainy(str(i)))
        _save(tmp_path / "gt" / f"{i:03d}gt.png", _clean(str(i)))
    _check(tmp_path, "subfolders", 3, "'gt suffix'")


def test_spa_data_txt_list_with_leading_slash(tmp_path):
    lines = []
    for i in range(3):
        _save(tmp_path / "real_test_1000" / "rain" / f"{i:03d}.png", _rainy(str(i)))
        _save(tmp_path / "real_test_1000" / "gt" / f"{i:03d}gt.png", _clean(str(i)))
        lines.append(f"/real_test_1000/rain/{i:03d}.png /real_test_1000/gt/{i:03d}gt.png")
    (tmp_path / "real_test_1000.txt").write_text("\n".join(lines) + "\n")
    info = _check(tmp_path, "pair_list", 3, "real_test_1000.txt")
    assert info["pairs"][0] == ["real_test_1000/rain/000.png", "real_test_1000/gt/000gt.png"]
    _check(tmp_path / "real_test_1000.txt", "pair_list", 3, "text list")  # the list itself as the folder
    _check(tmp_path / "real_test_1000", "subfolders", 3, "gt suffix")     # or the folder of images


def test_gt_rain_scene_folders(tmp_path):
    for scene in ("Oinari_0-0", "Gurutto_1-2"):
        for k in range(3):
            _save(tmp_path / scene / f"{scene}-R-{k:03d}.png", _rainy(scene, k))
        _save(tmp_path / scene / f"{scene}-C-000.png", _clean(scene))
    _save(tmp_path / "Gurutto_1-2" / "Gurutto_1-2-C-001.png", _clean("Gurutto_1-2"))  # a clean frame per frame
    info = _check(tmp_path, "scenes", 6, "GT-RAIN")
    pairs = dict((a, b) for a, b in info["pairs"])
    assert pairs["Gurutto_1-2/Gurutto_1-2-R-001.png"] == "Gurutto_1-2/Gurutto_1-2-C-001.png"
    assert pairs["Gurutto_1-2/Gurutto_1-2-R-002.png"] == "Gurutto_1-2/Gurutto_1-2-C-000.png"


def test_outdoor_rain_parameter_suffixed_names(tmp_path):
    for i in (1, 2):
        _save(tmp_path / "gt" / f"im_{i:04d}.png", _clean(str(i)))
        for k, (s, a) in enumerate([(80, 4), (90, 5)]):
            _save(tmp_path / "in" / f"im_{i:04d}_s{s}_a{a:02d}.png", _rainy(str(i), k))
            _save(tmp_path / "streak" / f"im_{i:04d}_s{s}_a{a:02d}.png", _rainy(str(i), k))  # not a pair folder
    info = _check(tmp_path, "subfolders", 4, "'many: parameter suffix'")
    assert "ignored: streak/" in info["why"]


def test_raindrop_data_gt(tmp_path):
    for i in (0, 1, 10):
        _save(tmp_path / "data" / f"{i}_rain.png", _rainy(str(i)))
        _save(tmp_path / "gt" / f"{i}_clean.png", _clean(str(i)))
    _check(tmp_path, "subfolders", 3, "'tags'")


@pytest.mark.parametrize("prefix", ["", "pie-"])
def test_rainds_three_kinds_and_one(tmp_path, prefix):
    for i in (1, 2):
        _save(tmp_path / "gt" / f"{prefix}norain-{i}.png", _clean(str(i)))
        for k, (kind, tag) in enumerate([("rainstreak", "rain"), ("raindrop", "rd"), ("rainstreak_raindrop",
                                                                                       "rd-rain")]):
            _save(tmp_path / kind / f"{prefix}{tag}-{i}.png", _rainy(str(i), k))
    info = _check(tmp_path, "rainds", 6, "rainstreak 2")
    assert "rainds:raindrop" in info["why"]
    info = _check(tmp_path, "rainds:raindrop", 2, "raindrop/", layout="rainds:raindrop")
    assert all(p[0].startswith("raindrop/") for p in info["pairs"])
    with pytest.raises(ConfigError, match="available"):
        find_pairs(tmp_path, layout="rainds:snow")


@pytest.mark.parametrize("option", [None, "clean_left"])
def test_side_by_side_named(tmp_path, option):
    for i in range(3):  # Rain1200 (DID-MDN): rainy | clean; Rain800 (ID-CGAN, BtoA): clean | rainy
        halves = [_rainy(str(i)), _clean(str(i))]
        _save(tmp_path / f"{i + 1}.png", np.concatenate(halves[::-1] if option else halves, axis=1))
    with pytest.raises(DataError, match="side_by_side"):  # names cannot reveal it: refused, with the hint
        find_pairs(tmp_path)
    layout = "side_by_side" + (f":{option}" if option else "")
    info = _check(tmp_path, layout, 3, "named by the user", layout=layout)
    assert info["pairs"][0] == (["1.png#right", "1.png#left"] if option else ["1.png#left", "1.png#right"])
    wrong = "side_by_side" if option else "side_by_side:clean_left"
    with pytest.warns(UserWarning, match="swapped"):  # rain adds light: the wrong order is noticed
        load_pairs(tmp_path, patch=None, layout=wrong)


def test_sorted_named(tmp_path):
    for i, (a, b) in enumerate([("IMG_7", "clean_0001"), ("IMG_12", "clean_0002")]):
        _save(tmp_path / "input" / f"{a}.png", _rainy(str(i)))
        _save(tmp_path / "target" / f"{b}.png", _clean(str(i)))
    with pytest.raises(DataError, match="no image pairs"):  # names pair nothing: mispairable, refused
        find_pairs(tmp_path)
    info = _check(tmp_path, "sorted", 2, "natural sorted order", layout="sorted")
    assert info["pairs"][0] == ["input/IMG_7.png", "target/clean_0001.png"]  # 7 before 12
    (tmp_path / "target" / "clean_0001.png").unlink()
    with pytest.raises(DataError, match="equal counts"):
        find_pairs(tmp_path, layout="sorted")


# --------------------------------------------------------------------------------- refusals and breakage
def test_ambiguous_folder_pairs_are_refused_naming_the_candidates(tmp_path):
    for i in range(2):
        _save(tmp_path / "input" / f"{i}.png", _rainy(str(i)))
        _save(tmp_path / "target" / f"{i}.png", _clean(str(i)))
        _save(tmp_path / "gt" / f"{i}.png", _clean(str(i)))
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    text = str(info.value)
    assert str(tmp_path) in text and "input/+target/" in text and "input/+gt/" in text and "\n" not in text


def test_two_layouts_fitting_one_folder_are_refused(tmp_path):
    for i in range(2):
        _save(tmp_path / f"rain-{i}.png", _rainy(str(i)))
        _save(tmp_path / f"norain-{i}.png", _clean(str(i)))
        _save(tmp_path / "rainy" / f"rain-{i}.png", _rainy(str(i)))
    with pytest.raises(DataError, match="several layouts"):
        find_pairs(tmp_path)
    assert find_pairs(tmp_path, layout="name_tags").layout == "name_tags"


def test_mostly_unpairable_names_are_refused_not_half_paired(tmp_path):
    for i in range(4):
        _save(tmp_path / "input" / f"a{i}.png", _rainy(str(i)))
        _save(tmp_path / "target" / (f"a{i}.png" if i == 0 else f"b{i}.png"), _clean(str(i)))
    with pytest.raises(DataError, match="no image pairs found"):
        find_pairs(tmp_path)


def test_broken_pairs_in_a_many_to_one_set(tmp_path):
    for i in (901, 902):
        _save(tmp_path / "ground_truth" / f"{i}.jpg", _clean(str(i)))
        for k in range(1, 4):
            _save(tmp_path / "rainy_image" / f"{i}_{k}.jpg", _rainy(str(i), k))
    _save(tmp_path / "rainy_image" / "903_1.jpg", _rainy("903"))           # missing partner
    (tmp_path / "rainy_image" / "902_2.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # unreadable
    _save(tmp_path / "rainy_image" / "902_3.jpg", np.zeros((H + 2, W, 3), np.uint8))  # size mismatch
    with pytest.raises(DataError) as info:
        load_pairs(tmp_path, patch=None)
    assert "903_1.jpg: no clean partner" in str(info.value) and "\n" not in str(info.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, meta = load_pairs(tmp_path, patch=8, on_error="skip")
    texts = " | ".join(str(w.message) for w in caught)
    assert "903_1.jpg" in texts and "902_2.jpg" in texts and "differ in size" in texts
    assert meta["n_images"] == 4 and meta["skipped"] == 3


def test_bom_pairs_csv_and_header_errors(tmp_path):
    for i in range(2):
        _save(tmp_path / "x" / f"{i}.png", _rainy(str(i)))
        _save(tmp_path / "y" / f"{i}.png", _clean(str(i)))
    rows = "input,target\r\nx/0.png,y/0.png\r\nx/1.png,y/1.png\r\n"
    (tmp_path / "pairs.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())  # as Excel saves "CSV UTF-8"
    _check(tmp_path, "pair_list", 2, "pairs.csv")
    (tmp_path / "pairs.csv").write_text("rainy,clean\nx/0.png,y/0.png\n")
    with pytest.raises(DataError, match="input,target"):
        find_pairs(tmp_path)


def test_pair_record_lists_pairs_without_decoding(tmp_path):
    for i in range(2):
        _save(tmp_path / "rain" / f"{i}.png", _rainy(str(i)))
        (tmp_path / "norain").mkdir(exist_ok=True)
        (tmp_path / "norain" / f"{i}.png").write_bytes(b"garbage: never decoded by pair_record")
    record = pair_record(tmp_path)
    assert record["layout"] == "subfolders" and record["n_pairs"] == 2
    assert record["pairs"] == [["rain/0.png", "norain/0.png"], ["rain/1.png", "norain/1.png"]]


def test_natural_order():
    assert sorted(["a10", "a2", "A1"], key=natural_key) == ["A1", "a2", "a10"]


# ----------------------------------------------------------------------------- eval folders, CLI, card
def test_eval_layouts_per_split_and_the_summary(tmp_path):
    for i in range(2):
        _save(tmp_path / "a" / "input" / f"{i}.png", _rainy(str(i)))
        _save(tmp_path / "a" / "target" / f"{i}.png", _clean(str(i)))
        _save(tmp_path / "b" / f"{i}.png", np.concatenate([_clean(str(i)), _rainy(str(i))], axis=1))
    folders = {"id": str(tmp_path / "a"), "ood": str(tmp_path / "b")}
    layouts = parse_layout_args(["ood=side_by_side:clean_left"], folders)
    data = eval_data_from_folders(folders, patch=8, layouts=layouts)
    assert data.info["splits"]["ood"]["layout"] == "side_by_side:clean_left"
    assert data.info["splits"]["id"]["layout"] == "subfolders"
    lines = summary_lines(data)
    assert len(lines) == 2 and lines[0].startswith("eval split id")
    assert "layout side_by_side:clean_left, 2 pairs" in lines[1]
    assert summary_lines(data.select(["ood"])) == lines[1:]
    with pytest.raises(ConfigError, match="no --eval-folder split"):
        parse_layout_args(["test=sorted"], folders)
    with pytest.raises(ConfigError, match="unknown eval layout"):
        parse_layout_args(["ood=diagonal"], folders)


def test_model_card_eval_layout_key(tmp_path):
    from probe.measure import measure
    from probe.models.card import read_card

    card = tmp_path / "net.toml"
    card.write_text('family = "resnet"\nweights = "w.safetensors"\neval_layout = { ood = "side_by_side" }\n')
    assert read_card(card).eval_layout == {"ood": "side_by_side"}
    card.write_text('family = "resnet"\nweights = "w.safetensors"\neval_layout = 3\n')
    with pytest.raises(ConfigError, match="eval_layout"):
        read_card(card)
    card.write_text('family = "resnet"\nweights = "w.safetensors"\neval_layout = "diagonal"\n')
    with pytest.raises(ConfigError, match=r"net\.toml: 'eval_layout': unknown eval layout 'diagonal'"):
        measure(card, eval_folders={"id": str(tmp_path)}, out=tmp_path / "r.h5")


def test_cli_eval_layout_flag_is_one_line_on_error(tmp_path, capsys):
    from probe.cli import main

    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"")
    code = main(["measure", str(ckpt), "--family", "resnet", "--eval-folder", f"id={tmp_path}",
                 "--eval-layout", "ood=sorted", "--out", str(tmp_path / "r.h5"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no --eval-folder split 'ood'" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_measure_records_the_layout_and_pairs_in_the_store(tmp_path, capsys):
    import json

    import torch

    from probe.cli import main
    from probe.store import ResultStore

    (tmp_path / "net.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)\n"
        "    def forward(self, x):\n        return x + 0 * self.conv(x)\n")
    torch.manual_seed(0)
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3), "conv.bias": torch.zeros(3)}, tmp_path / "net.pth")
    for i in range(2):
        _save(tmp_path / "r800" / f"{i}.png", np.concatenate([_clean(str(i)), _rainy(str(i))], axis=1))
        _save(tmp_path / "r1400" / "rainy_image" / f"9_{i + 1}.png", _rainy("9", i))
    _save(tmp_path / "r1400" / "ground_truth" / "9.png", _clean("9"))
    store = tmp_path / "rep" / "results.h5"
    assert main(["measure", str(tmp_path / "net.pth"), "--arch", f"{tmp_path / 'net.py'}:Net", "--probes",
                 "generalization", "--eval-folder", f"id={tmp_path / 'r1400'}", "--eval-folder",
                 f"ood={tmp_path / 'r800'}", "--eval-layout", "ood=side_by_side:clean_left", "--eval-patch", "8",
                 "--out", str(store), "-q"]) == 0
    out = capsys.readouterr().out
    assert "eval split id:" in out and "many rainy per clean" in out
    assert "eval split ood:" in out and "layout side_by_side:clean_left, 2 pairs" in out
    stored = json.loads(ResultStore(store).entries()["eval"].iloc[0])["splits"]
    assert stored["ood"]["pairs"] == [["0.png#right", "0.png#left"], ["1.png#right", "1.png#left"]]
    assert stored["id"]["pairs"] == [["rainy_image/9_1.png", "ground_truth/9.png"],
                                     ["rainy_image/9_2.png", "ground_truth/9.png"]]
    assert stored["id"]["layout"] == "subfolders" and "index suffix" in stored["id"]["why"]
