"""probe.data.images.read_image: one scale per pixel type, Pillow-version quirks, palettes, orientation, and file
names that are not valid UTF-8 (issue 13 kind 4). References: skimage.util.img_as_float, Pillow's own convert
and ImageOps.exif_transpose."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps, PngImagePlugin
from skimage.util import img_as_float

from probe.data.images import read_image
from probe.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SCENE = np.random.default_rng(0).random((20, 24))


def reference(arr: np.ndarray) -> np.ndarray:
    """skimage's scale (dtype range), clipped to [0, 1], grey → RGB."""
    ref = np.clip(img_as_float(arr), 0, 1)
    return np.repeat(ref[..., None], 3, -1) if ref.ndim == 2 else ref[..., :3]


def write_png16_grey(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, np.uint16)
    h, w = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("dtype,peak", [(np.uint8, 200), (np.uint16, 40000), (np.uint32, 3_000_000_000),
                                        (np.int16, 30000), (np.int32, 2_000_000_000), (np.float32, 0.9),
                                        (np.float64, 0.9)])
def test_tiff_scale_depends_on_the_pixel_type_only(tmp_path, dtype, peak):
    """A dark and a bright image of one type keep their brightness ratio (no per-image guess)."""
    warnings.filterwarnings("ignore", "image .* are black")  # dark 32-bit images warn (tested below)
    got = {}
    for name, level in (("dark", peak / 20), ("bright", peak)):
        arr = (SCENE * level).astype(dtype)
        tifffile.imwrite(tmp_path / f"{name}.tif", arr)
        got[name] = read_image(tmp_path / f"{name}.tif")
        np.testing.assert_allclose(got[name], reference(arr), rtol=1e-6, atol=1e-7)
        assert got[name].dtype == np.float32 and got[name].shape == (20, 24, 3)
    assert got["dark"].mean() / got["bright"].mean() == pytest.approx(1 / 20, rel=0.1)


def test_pub13_int32_tiffs_of_one_16_bit_scale(tmp_path):
    """pub_13: two int32 TIFFs holding 16-bit data, one dark one bright → scaled alike, the dark one warned."""
    dark, bright = (SCENE * 200).astype(np.int32), (SCENE * 40000).astype(np.int32)
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    tifffile.imwrite(tmp_path / "bright.tif", bright)
    with pytest.warns(UserWarning, match=r"dark.tif: 32-bit integer .* store 16-bit data as uint16"):
        d = read_image(tmp_path / "dark.tif").mean()
    with pytest.warns(UserWarning, match="bright.tif"):
        b = read_image(tmp_path / "bright.tif").mean()
    assert d / b == pytest.approx(dark.mean() / bright.mean(), rel=0.01)


@pytest.mark.parametrize("pillow_10_0", [False, True], ids=["current-pillow", "pillow-10.0-mode-I"])
def test_16_bit_grey_png_on_every_allowed_pillow(tmp_path, monkeypatch, pillow_10_0):
    if pillow_10_0:  # Pillow 10.0 opened 16-bit grey PNGs as 32-bit mode "I"
        monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))
    data = (SCENE * 200).astype(np.uint16)
    write_png16_grey(tmp_path / "dark16.png", data)
    with Image.open(tmp_path / "dark16.png") as im:
        assert im.mode == ("I" if pillow_10_0 else "I;16")
    got = read_image(tmp_path / "dark16.png")
    np.testing.assert_allclose(got[..., 0], data / 65535.0, rtol=1e-6)
    assert got.max() < 0.01  # not 257x too bright


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16"])
def test_pillow_modes_match_pillows_own_conversion(tmp_path, mode):
    rgb = (np.random.default_rng(1).random((16, 18, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(rgb).convert("RGBA" if mode in ("LA", "PA", "RGBA") else "RGB")
    if mode == "I;16":
        img = Image.fromarray((SCENE[:16, :18] * 60000).astype(np.uint16))
    elif mode in ("P", "PA"):
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16) if mode == "P" else img.convert("PA")
    else:
        img = img.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else (".tif" if mode in ("LA", "PA", "I;16") else ".png")
    path = tmp_path / f"img{suffix}"
    img.save(path)
    got = read_image(path)
    with Image.open(path) as saved:
        if saved.mode.startswith("I;16"):
            ref = reference(np.asarray(saved))
        else:
            ref = np.asarray(saved.convert("RGB"), np.float32) / 255.0
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_palette_and_min_is_white_tiffs(tmp_path):
    idx = (SCENE * 3.99).astype(np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :4] = [[0, 65535, 0, 30000], [0, 0, 65535, 30000], [0, 0, 0, 65535]]
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    np.testing.assert_allclose(read_image(tmp_path / "pal.tif"), np.moveaxis(cmap[:, idx] >> 8, 0, -1) / 255.0,
                               rtol=1e-6)  # libtiff's reading of 16-bit colour maps
    grey = (SCENE * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "miniswhite.tif", grey, photometric="miniswhite")
    np.testing.assert_allclose(read_image(tmp_path / "miniswhite.tif")[..., 0], (255 - grey) / 255.0, rtol=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_as_viewers_do(tmp_path, orientation):
    rgb = (np.random.default_rng(2).random((6, 9, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        viewer = np.asarray(ImageOps.exif_transpose(im), np.float32) / 255.0
    np.testing.assert_allclose(read_image(tmp_path / "o.png"), viewer, atol=1e-6)
    tifffile.imwrite(tmp_path / "o.tif", rgb, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_allclose(read_image(tmp_path / "o.tif"), viewer, atol=1e-6)  # TIFF tag through tifffile
    if orientation in (5, 6, 7, 8):
        assert viewer.shape[:2] == (9, 6)


def test_unreadable_files_are_one_data_error_naming_the_file(tmp_path):
    Image.fromarray((SCENE * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 3)
    tifffile.imwrite(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    for name in ("trunc.png", "noise.tif", "nan.tif", "missing.png"):
        with pytest.raises(DataError, match=name) as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value)


def _non_utf8_folder(tmp_path: Path) -> Path:
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/imgs_\xff"))
    sub = Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9"))
    sub.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(6):
        where = sub if i % 2 else root
        name = os.fsdecode(os.fsencode(where) + b"/img_\xe9%d.png" % i)
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(name)
    return root


def test_folder_with_non_utf8_names_reads_and_names_files_printably(tmp_path):
    from probe.data.backgrounds import make_background

    root = _non_utf8_folder(tmp_path)
    src = make_background("folder", 32, root=root, test_fraction=0, size=32)
    assert src.images(6).shape == (6, 3, 32, 32)
    broken = Path(os.fsdecode(os.fsencode(root) + b"/z_\xfe.png"))
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        read_image(broken)
    message = str(info.value)
    message.encode("utf-8")  # printable anywhere: the undecodable byte is shown as \xfe
    assert "z_\\xfe.png" in message


def test_non_utf8_names_train_measure_report(tmp_path):
    """Images in a non-UTF-8 folder work through train → measure → report; a non-UTF-8 run dir is refused."""
    root = _non_utf8_folder(tmp_path)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('name = "nu"\nseed = 0\ndevice = "cpu"\n[model]\nfamily = "resnet"\nsize = "tiny"\n'
                   '[data]\nbackground = "folder"\nn_backgrounds = 3\npatch = 32\n'
                   '[data.background_options]\ntest_fraction = 0.3\n[degradation]\ntype = "rain"\n'
                   'preset = "small"\n[train]\niterations = 2\nbatch = 2\nval_every = 2\ncheckpoint_every = 2\n'
                   '[eval]\nn_images = 2\n[eval.splits.id]\ntype = "rain"\npreset = "small"\n')
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "probe.cli", "--quiet", *args], cwd=tmp_path, env=env,
                              capture_output=True, timeout=300)

    root_arg = os.fsencode(root)
    t = cli("train", "cfg.toml", "--out", "run", "--set", b"data.background_options.root=" + root_arg)
    assert t.returncode == 0, t.stderr.decode(errors="replace")
    m = cli("measure", "run", "--probes", "generalization", "--out", "rep/results.h5")
    assert m.returncode == 0, m.stderr.decode(errors="replace")
    r = cli("report", "rep")
    assert r.returncode == 0 and (tmp_path / "rep" / "report.html").is_file(), r.stderr.decode(errors="replace")
    bad = cli("train", "cfg.toml", "--out", b"run_\xfe", "--set", b"data.background_options.root=" + root_arg)
    err = bad.stderr.decode("utf-8").strip()
    assert bad.returncode == 2 and len(err.splitlines()) == 1 and "run_\\xfe" in err and "UTF-8" in err


def test_the_reader_is_shared():
    """Every reader goes through probe.data.images.read_image (folder re-exports it under its old name)."""
    from probe.data.backgrounds import folder

    assert folder.read_image is read_image
    src = (ROOT / "probe").rglob("*.py")
    decoders = [p for p in src if p.name != "images.py"
                and ("Image.open(" in p.read_text() or "tifffile.imread" in p.read_text())]
    assert decoders == [], f"images decoded outside probe.data.images: {decoders}"


def test_warning_free_for_ordinary_images(tmp_path):
    Image.fromarray((SCENE * 255).astype(np.uint8)).save(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "a.png")
