"""`probe synth`: the contact sheet, the complexity table, and one-line errors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from probe.cli import main
from probe.data.synth import COLUMNS, parse_options, synthesize


def test_synth_writes_the_contact_sheet_and_prints_complexity(tmp_path, capsys):
    out = tmp_path / "sheet"
    code = main(["synth", "--background", "smooth", "--degradation", "rain", "--preset", "medium", "--n", "3",
                 "--patch", "32", "--seed", "1", "--out", str(out)])
    assert code == 0
    sheet = out / "contact_sheet.png"
    with Image.open(sheet) as img:
        width, height = img.size
        pixels = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32))
    assert width > 4 * 128 and height > 3 * 128  # 4 columns x 3 rows of tiles enlarged to >= 128 px
    assert pixels.std() > 10  # not a blank image
    text = capsys.readouterr().out
    assert "png_bpp" in text and "mean" in text and str(sheet) in text and '"preset": "medium"' in text
    assert len(COLUMNS) == 4


def test_synth_for_noise_and_blur(tmp_path):
    for kind in ("noise", "blur"):
        assert main(["synth", "--background", "smooth", "--degradation", kind, "--n", "2", "--patch", "16",
                     "--out", str(tmp_path / kind)]) == 0
        assert (tmp_path / kind / "contact_sheet.png").stat().st_size > 0


def test_bad_preset_exits_2_with_one_line(tmp_path, capsys):
    code = main(["synth", "--background", "smooth", "--preset", "bogus", "--n", "1", "--patch", "16",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'bogus'" in err and err.startswith("probe: error:")
    assert not (tmp_path / "contact_sheet.png").exists()


def test_bad_background_option_exits_2(tmp_path, capsys):
    assert main(["synth", "--background", "smooth", "--background-option", "oops", "--out", str(tmp_path)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["synth", "--background", "smooth", "--n", "0", "--out", str(tmp_path)]) == 2


def test_synthesize_is_deterministic_and_options_parse():
    a = synthesize("smooth", "rain", preset="small", n=2, patch=16, seed=3)
    b = synthesize("smooth", "rain", preset="small", n=2, patch=16, seed=3)
    assert torch.equal(a.degraded, b.degraded)
    assert parse_options(["size=40", "root=/data/x", "flag=true", "pair=[1, 2]"]) == {
        "size": 40, "root": "/data/x", "flag": True, "pair": [1, 2]}
