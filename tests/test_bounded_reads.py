"""Bounded memory and time when reading real images and folders: decompression bombs refused on the header,
crops cut on read (exactly the centre crop of the full decode, every EXIF orientation), symlink loops listed
once in background folders and eval folders, and a property test over damaged folder trees."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from probe.data.images import read_image, read_region
from probe.data.listing import list_images
from probe.data.pairs import find_pairs, load_pairs
from probe.errors import DataError, ProbeError

ROOT = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb(path: Path, side: int = 20000) -> Path:
    """A 1-bit grey PNG of side × side zero pixels: ~50 kB on disk, 400 Mpixel decoded (a decompression bomb)."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


# -------------------------------------------------------------------------------- decompression bombs
def test_bomb_is_refused_in_one_line_before_decoding(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.png")
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(DataError) as info:
            read_image(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    text = str(info.value)
    assert "bomb.png is 20000×20000 (400.0 Mpixel)" in text and "decode limit" in text and "\n" not in text
    assert peak < 4 << 20 and time.perf_counter() - t < 2


@pytest.mark.slow
def test_bomb_is_refused_on_the_header_in_one_line_with_bounded_memory(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    script = textwrap.dedent(f"""
        import resource, time
        from probe.data.images import read_image
        from probe.errors import DataError
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        try:
            read_image({str(bomb)!r})
        except DataError as exc:
            print("REFUSED", exc)
        print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
        print("SECONDS", time.perf_counter() - t)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert "bomb.png is 20000×20000" in lines["REFUSED"] and "decode limit" in lines["REFUSED"]
    assert int(lines["GROWTH_KB"]) < 64 * 1024  # decoding it would take > 400 MB
    assert float(lines["SECONDS"]) < 5


def test_bomb_in_pairs_and_backgrounds_is_one_error_or_skipped(tmp_path):
    (tmp_path / "pairs" / "rain").mkdir(parents=True)
    (tmp_path / "pairs" / "norain").mkdir()
    write_bomb(tmp_path / "pairs" / "rain" / "1.png", 12000)
    write_bomb(tmp_path / "pairs" / "norain" / "1.png", 12000)
    for name in ("rain", "norain"):
        Image.fromarray(np.full((16, 16, 3), 90 if name == "rain" else 40, np.uint8)).save(
            tmp_path / "pairs" / name / "2.png")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="decode limit"):
            load_pairs(tmp_path / "pairs", patch=8)
        with pytest.warns(UserWarning, match="decode limit"):
            batch, info = load_pairs(tmp_path / "pairs", patch=8, on_error="skip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info["pairs"] == [["rain/2.png", "norain/2.png"]] and peak < 16 << 20
    from probe.data.backgrounds import make_background

    src = make_background("folder", patch=8, root=str(tmp_path / "pairs" / "rain"), size=8, test_fraction=0.0)
    with pytest.raises(DataError, match="decode limit"):
        src.images(2)


def test_decode_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(DataError, match="30×20 .*PROBE_MAX_IMAGE_PIXELS"):
        read_image(path)
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="positive integer"):
        read_image(path)
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "600")
    assert read_image(path).shape == (20, 30, 3)


# ----------------------------------------------------------------------------------------- crop on read
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_crop_on_read_equals_the_crop_of_the_full_image(tmp_path, orientation, fmt):
    rng = np.random.default_rng(orientation)
    arr = (rng.random((13, 10, 3)) * 255).astype(np.uint8)  # odd sizes: centre offsets must round alike
    path = tmp_path / f"o{orientation}.{fmt}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif.tobytes()) if fmt == "png" else \
        Image.fromarray(arr).save(path, tiffinfo={0x0112: orientation})
    full = read_image(path)
    assert full.shape[:2] == ((10, 13) if orientation >= 5 else (13, 10))
    for crop in [(5, 4), (4, 7), (100, 3), (1, 1)]:
        h, w = min(crop[0], full.shape[0]), min(crop[1], full.shape[1])
        top, left = (full.shape[0] - h) // 2, (full.shape[1] - w) // 2
        part, size = read_region(path, crop=crop)
        assert size == full.shape[:2]
        np.testing.assert_array_equal(part, full[top:top + h, left:left + w])
    half = full.shape[1] // 2
    np.testing.assert_array_equal(read_image(path, half="left"), full[:, :half])
    np.testing.assert_array_equal(read_image(path, half="right"), full[:, full.shape[1] - half:])
    sq = read_image(path, crop=(100, 100), square=True)
    s = min(full.shape[:2])
    np.testing.assert_array_equal(sq, full[(full.shape[0] - s) // 2:][:s, (full.shape[1] - s) // 2:][:, :s])


def test_large_pairs_are_cropped_on_read_with_bounded_memory(tmp_path):
    h, w = 1500, 2000  # 3 Mpixel per image; full-size float32 pairs would be 72 MB for two of them
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx + yy) % 200).astype(np.uint8)
    for i in range(2):
        clean = np.stack([base, base // 2, base // 3], axis=-1)
        rainy = clean.copy()
        rainy[:, w // 2 + i] = 255
        Image.fromarray(rainy).save(tmp_path / f"rain-{i}.png", compress_level=1)
        Image.fromarray(clean).save(tmp_path / f"norain-{i}.png", compress_level=1)
    tracemalloc.start()
    try:
        batch, info = load_pairs(tmp_path, patch=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert batch.degraded.shape == (2, 3, 64, 64) and info["patch"] == 64
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB: full-size images were held"
    full = read_image(tmp_path / "rain-1.png")
    top, left = (h - 64) // 2, (w - 64) // 2
    np.testing.assert_array_equal(batch.degraded[1].permute(1, 2, 0).numpy(), full[top:top + 64, left:left + 64])


def test_evaluation_batch_bound_is_checked_before_reading(tmp_path, monkeypatch):
    for name in ("rain", "norain"):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.png").write_bytes(b"never decoded")
    monkeypatch.setenv("PROBE_MAX_EVAL_BYTES", str(3 * 128 * 128 * 44 - 1))
    with pytest.raises(DataError, match="3 pairs of 16384 pixels need .* over the bound"):
        load_pairs(tmp_path, patch=128)
    monkeypatch.setenv("PROBE_MAX_EVAL_BYTES", "-5")
    with pytest.raises(DataError, match="positive integer"):
        load_pairs(tmp_path, patch=128)


# --------------------------------------------------------------------------------------- symlink loops
def _tree(root: Path, loops: int) -> int:
    n = 0
    for sub in ("a", "b", "a/deep"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 10 * n, np.uint8)).save(root / sub / f"{i}.png")
            n += 1
    os.symlink("..", root / "a" / "up")
    if loops > 1:
        os.symlink("../..", root / "a" / "deep" / "top")
        os.symlink(".", root / "b" / "here")
    os.symlink("a/0.png", root / "same.png")       # a second name for a file already listed
    os.symlink("missing.png", root / "dangling.png")
    return n


@pytest.mark.parametrize("loops", [1, 3])
def test_symlink_loops_list_each_image_once_quickly(tmp_path, loops):
    n = _tree(tmp_path / "photos", loops)
    t = time.perf_counter()
    files = list_images(tmp_path / "photos")
    assert time.perf_counter() - t < 2
    assert len(files) == n == len({f.resolve() for f in files})
    assert files == sorted(files, key=lambda p: p.relative_to(tmp_path / "photos").as_posix())
    from probe.data.backgrounds import make_background

    assert make_background("folder", patch=8, root=str(tmp_path / "photos"), size=8).max_images("train") \
        + make_background("folder", patch=8, root=str(tmp_path / "photos"), size=8).max_images("test") == n


def test_symlink_loops_in_eval_folders(tmp_path):
    for i in range(3):
        for name, value in (("rain", 200), ("norain", 50)):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / name / f"{i}.png")
    os.symlink("..", tmp_path / "rain" / "up")
    os.symlink("..", tmp_path / "norain" / "up")
    scenes = tmp_path / "scenes" / "s1"
    scenes.mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(scenes / f"s1-R-{k:03d}.png")
    Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(scenes / "s1-C-000.png")
    os.symlink("..", scenes / "loop")
    os.symlink("..", tmp_path / "scenes" / "loop")
    t = time.perf_counter()
    assert len(find_pairs(tmp_path).pairs) == 3
    assert len(find_pairs(tmp_path / "scenes").pairs) == 2
    assert time.perf_counter() - t < 2


# ------------------------------------------------------------------------------ property: damaged trees
_NAMES = ["input", "target", "rain", "norain", "gt", "data", "rainy_image", "ground_truth", "in", "s1", "X2",
          "rainstreak", "raindrop"]
_FILES = ["1.png", "2.png", "rain-1.png", "norain-1.png", "1_rain.png", "1_clean.png", "901_1.jpg", "901.jpg",
          "norain-1x2.png", "000gt.png", "s1-R-000.png", "s1-C-000.png", "rd-rain-1.png", "pairs.csv", "list.txt",
          "x.tif", "\u00e9.png", "a b.png"]
_CONTENT = ["png", "png_other_size", "empty", "garbage", "truncated", "bomb_header", "csv", "txt"]


def _content(kind: str, rng: np.random.Generator) -> bytes:
    import io

    if kind in ("png", "png_other_size", "truncated"):
        side = 8 if kind != "png_other_size" else 9
        buf = io.BytesIO()
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
        return data[: len(data) // 2] if kind == "truncated" else data
    if kind == "bomb_header":
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    if kind == "csv":
        return b"\xef\xbb\xbfinput,target\n1.png,2.png\nmissing.png,1.png\n"
    if kind == "txt":
        return b"/input/1.png /target/1.png\nrain-1.png norain-1.png\n"
    return b"" if kind == "empty" else bytes(rng.integers(0, 256, 64, dtype=np.uint8))


@st.composite
def damaged_trees(draw):
    entries = draw(st.lists(st.tuples(st.lists(st.sampled_from(_NAMES), max_size=2), st.sampled_from(_FILES),
                                      st.sampled_from(_CONTENT)), min_size=0, max_size=14))
    links = draw(st.lists(st.tuples(st.lists(st.sampled_from(_NAMES), max_size=2), st.sampled_from(
        ["..", ".", "../..", "missing", "1.png", "../input"])), max_size=3))
    layout = draw(st.sampled_from([None, None, "sorted", "side_by_side", "side_by_side:clean_left", "pair_list",
                                   "subfolders", "name_tags", "scenes", "rainds"]))
    return entries, links, layout, draw(st.sampled_from(["raise", "skip"])), draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=damaged_trees())
def test_damaged_folder_trees_give_pairs_or_one_probe_error(tmp_path_factory, case):
    entries, links, layout, on_error, seed = case
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(seed)
    for dirs, name, kind in entries:
        folder = root.joinpath(*dirs)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / name).is_dir():
            (folder / name).write_bytes(_content(kind, rng))
    for i, (dirs, target) in enumerate(links):
        folder = root.joinpath(*dirs)
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(target, folder / f"link{i}")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            batch, info = load_pairs(root, patch=8, on_error=on_error, layout=layout)
            assert len(batch) == info["n_images"] == len(info["pairs"]) >= 1
            assert batch.degraded.shape[1:] == (3, 8, 8) or min(batch.degraded.shape[-2:]) < 8
        except ProbeError as exc:
            assert "\n" not in str(exc)
        try:
            from probe.data.backgrounds import make_background

            make_background("folder", patch=4, root=str(root), size=4, on_error=on_error).images(1)
        except ProbeError as exc:
            assert "\n" not in str(exc)
    assert time.perf_counter() - t < 10
