"""Background sources: the contract (exact n, distinct, nested, deterministic, split-disjoint), option
validation, the crop/flip pool, and the folder reader on 8/16-bit, grey/RGBA, nested and broken files."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from probe.data.backgrounds import BACKGROUNDS, BackgroundPool, BackgroundSource, make_background
from probe.errors import ConfigError, DataError

PATCH = 16
BUILTIN = ["smooth", "dead_leaves", "faces", "natural", "texture"]


def digests(images: torch.Tensor) -> list[bytes]:
    return [hashlib.sha1(img.numpy().tobytes()).digest() for img in images]


# ---- the source contract, for every built-in source ------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_contract(name):
    src = make_background(name, PATCH, seed=3)
    assert isinstance(src, BackgroundSource) and src.name == name
    imgs = src.images(6)
    s = src.size
    assert s >= PATCH and imgs.shape == (6, 3, s, s) and imgs.dtype == torch.float32
    assert float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0 and float(imgs.std()) > 0.01
    assert len(set(digests(imgs))) == 6  # exactly n distinct

    fresh = make_background(name, PATCH, seed=3)
    assert torch.equal(fresh.images(3), imgs[:3])  # nested, and deterministic across instances
    assert torch.equal(fresh.images(6), imgs)
    assert torch.equal(src.images(4), imgs[:4])
    src.images(2).zero_()  # the caller owns the returned tensor
    assert torch.equal(src.images(2), imgs[:2])
    assert src.images(0).shape == (0, 3, s, s)

    other = make_background(name, PATCH, seed=4).images(6)
    assert not torch.equal(other, imgs)

    # test images are never train images, whichever seeds the two use
    test = make_background(name, PATCH, seed=4).images(6, split="test")
    assert test.shape == imgs.shape
    assert not set(digests(test)) & (set(digests(imgs)) | set(digests(other)))


def test_faces_are_finite_and_held_out():
    src = make_background("faces", PATCH)
    assert src.max_images("train") == 80 and src.max_images("test") == 20
    train, test = src.images(80), src.images(20, "test")
    assert len(set(digests(train))) == 80 and len(set(digests(test))) == 20
    assert not set(digests(train)) & set(digests(test))
    # another seed draws the same 80 train faces in another order: the split does not depend on the seed
    other = make_background("faces", PATCH, seed=9).images(80)
    assert set(digests(other)) == set(digests(train)) and not torch.equal(other, train)
    with pytest.raises(DataError, match=r"'faces'.*only 80"):
        src.images(81)
    with pytest.raises(DataError, match=r"only 20 .*'test'"):
        src.images(21, "test")
    assert make_background("smooth", PATCH).max_images("train") is None


def test_natural_test_split_uses_held_out_photos():
    from probe.data.backgrounds import bundled

    assert bundled.NATURAL_TEST and not set(bundled.NATURAL_TRAIN) & set(bundled.NATURAL_TEST)
    src = make_background("natural", PATCH, size=300, scale=(1.0, 1.0))  # full-height windows, no resize
    assert [r.data_ptr() for r in src._regions("test")] == [
        bundled.bundled_image(n).data_ptr() for n in bundled.NATURAL_TEST]
    chelsea = bundled.bundled_image("chelsea")  # 300 x 451: image 0 of the test split is a window of it
    first = src.images(1, "test")[0]
    assert any(torch.equal(first, chelsea[:, :, x:x + 300]) for x in range(chelsea.shape[-1] - 299))


def test_texture_splits_are_disjoint_regions():
    from probe.data.backgrounds import bundled

    src = make_background("texture", PATCH, size=24)
    train, test = src._regions("train"), src._regions("test")
    for a, b, name in zip(train, test, bundled.TEXTURES):
        full = bundled.bundled_image(name)
        assert a.shape[-1] + b.shape[-1] == full.shape[-1]
        assert torch.equal(torch.cat([a, b], dim=-1), full)


def test_option_validation():
    with pytest.raises(ConfigError, match=r"'dead_leaves'.*unknown option 'compexity'.*complexity"):
        make_background("dead_leaves", PATCH, compexity=0.3)
    with pytest.raises(ConfigError, match=r"option 'complexity' must be a float in \[0, 1\], got 1.5"):
        make_background("dead_leaves", PATCH, complexity=1.5)
    with pytest.raises(ConfigError, match="option 'complexity'"):
        make_background("dead_leaves", PATCH, complexity="high")
    with pytest.raises(ConfigError, match="option 'size' must be >= patch"):
        make_background("smooth", PATCH, size=PATCH - 1)
    with pytest.raises(ConfigError, match="option 'scale'"):
        make_background("natural", PATCH, scale=(0.9, 0.5))
    with pytest.raises(ConfigError, match="patch"):
        make_background("smooth", 0)
    with pytest.raises(ConfigError, match="seed"):
        make_background("smooth", PATCH, seed=-1)
    with pytest.raises(ConfigError, match="split"):
        make_background("smooth", PATCH).images(2, split="val")
    with pytest.raises(ConfigError, match="number of images"):
        make_background("smooth", PATCH).images(-1)
    with pytest.raises(ConfigError, match=r"unknown background source 'nope'.*dead_leaves"):
        make_background("nope", PATCH)
    assert set(BUILTIN + ["folder"]) <= set(BACKGROUNDS.names())


def test_describe_is_json_and_size_option():
    src = make_background("dead_leaves", PATCH, seed=2, complexity=0.25, size=40)
    d = json.loads(json.dumps(src.describe()))
    assert d == {"name": "dead_leaves", "patch": PATCH, "seed": 2,
                 "options": {"complexity": 0.25, "texture": None, "size": 40}}
    assert src.images(1).shape[-1] == 40
    assert make_background("faces", PATCH).size == PATCH  # a face fills the patch


def test_dead_leaves_texture_option():
    flat = make_background("dead_leaves", 32, complexity=1.0, texture=0.0).images(3)
    textured = make_background("dead_leaves", 32, complexity=1.0, texture=1.0).images(3)
    assert not torch.equal(flat, textured)
    # texture=0 (and no blur at complexity 1): every disk is one flat colour, so most pixels equal their right neighbour
    same = (flat[..., 1:] == flat[..., :-1]).float().mean()
    assert same > 0.5 and (textured[..., 1:] == textured[..., :-1]).float().mean() < same


# ---- the pool -------------------------------------------------------------------------------------------
def _windows(images: torch.Tensor, p: int) -> set[bytes]:
    out = set()
    n, _, h, w = images.shape
    for i in range(n):
        for y in range(h - p + 1):
            for x in range(w - p + 1):
                win = images[i, :, y:y + p, x:x + p]
                for v in (False, True):
                    for hz in (False, True):
                        f = win.flip(-2) if v else win
                        f = f.flip(-1) if hz else f
                        out.add(f.contiguous().numpy().tobytes())
    return out


def test_pool_crops_are_flipped_windows_and_deterministic():
    images = torch.arange(2 * 3 * 8 * 9, dtype=torch.float32).reshape(2, 3, 8, 9) / 432.0
    pool = BackgroundPool(images, patch=4)
    batch = pool.sample(48, torch.Generator().manual_seed(0))
    assert batch.shape == (48, 3, 4, 4) and batch.dtype == torch.float32
    allowed = _windows(images, 4)
    assert all(c.contiguous().numpy().tobytes() in allowed for c in batch)
    again = pool.sample(48, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
    assert not torch.equal(batch, pool.sample(48, torch.Generator().manual_seed(1)))
    # both flips occur: rows increase downwards unless flipped vertically, cols rightwards unless flipped
    down = batch[:, 0, 1, 0] > batch[:, 0, 0, 0]
    right = batch[:, 0, 0, 1] > batch[:, 0, 0, 0]
    assert 0 < int(down.sum()) < 48 and 0 < int(right.sum()) < 48
    assert len({int(i) for i in (batch[:, 0, 0, 0] * 432).round() // 216}) == 2  # both images used


def test_pool_validation():
    with pytest.raises(DataError, match="smaller than patch 9"):
        BackgroundPool(torch.rand(1, 3, 8, 8), patch=9)
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        BackgroundPool(torch.rand(3, 8, 8), patch=4)
    assert BackgroundPool(torch.rand(2, 3, 8, 8), 8).sample(0, torch.Generator()).shape == (0, 3, 8, 8)


# ---- the folder source ----------------------------------------------------------------------------------
def _rgb(h, w, seed):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_rgb(20, 24, 0)).save(root / "a_rgb.png")
    Image.fromarray(_rgb(20, 20, 1)[..., 0]).save(root / "b_grey.png")
    rgba = np.dstack([_rgb(22, 20, 2), np.full((22, 20), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "c_rgba.png")
    Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)).save(root / "sub" / "d_grey16.png")
    import tifffile

    tifffile.imwrite(root / "sub" / "deeper" / "e_rgb16.tif",
                     np.full((20, 20, 3), [0, 65535, 13107], dtype=np.uint16), photometric="rgb")
    Image.fromarray(_rgb(20, 20, 5)).save(root / "sub" / "deeper" / "f.bmp")
    Image.fromarray(_rgb(20, 20, 6)).save(root / "g.JPG", quality=95)
    (root / "notes.txt").write_text("not an image, not listed")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def test_folder_reads_formats_recursively(folder):
    src = make_background("folder", PATCH, root=folder, test_fraction=0, size=PATCH)
    assert src.max_images("train") == 7 and src.max_images("test") == 0
    assert {p.name for p in src.files()} == {"a_rgb.png", "b_grey.png", "c_rgba.png", "d_grey16.png",
                                              "e_rgb16.tif", "f.bmp", "g.JPG"}
    imgs = src.images(7)
    assert imgs.shape == (7, 3, PATCH, PATCH) and imgs.dtype == torch.float32
    by_name = dict(zip([p.name for p in src.files()], imgs))
    assert torch.allclose(by_name["d_grey16.png"], torch.full((3, PATCH, PATCH), 32768 / 65535))
    assert torch.allclose(by_name["e_rgb16.tif"][:, 0, 0], torch.tensor([0.0, 1.0, 0.2]))
    grey = by_name["b_grey.png"]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    rgba = np.asarray(Image.open(folder / "sub" / "c_rgba.png"))[3:19, 2:18, :3] / 255.0  # centre crop
    assert torch.allclose(by_name["c_rgba.png"], torch.from_numpy(rgba).permute(2, 0, 1).float())
    with pytest.raises(DataError, match=r"'folder'.*only 7"):
        src.images(8)


def test_folder_split_and_order(folder):
    a = make_background("folder", PATCH, seed=0, root=folder, test_fraction=0.3)
    b = make_background("folder", PATCH, seed=1, root=folder, test_fraction=0.3)
    assert a.max_images("test") == 2 and a.max_images("train") == 5
    assert set(a.files("test")) == set(b.files("test"))  # the split never depends on the seed
    assert not set(a.files("test")) & set(a.files("train"))
    assert torch.equal(a.images(3), make_background("folder", PATCH, seed=0, root=folder,
                                                    test_fraction=0.3).images(5)[:3])
    assert not set(digests(a.images(5))) & set(digests(b.images(2, "test")))
    assert src_size(a) == 2 * PATCH


def src_size(src):
    return src.images(1).shape[-1]


def test_folder_errors(tmp_path, folder):
    bad = folder / "sub" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    src = make_background("folder", PATCH, root=folder, test_fraction=0)
    with pytest.raises(DataError, match="broken.png"):
        src.images(7)
    skip = make_background("folder", PATCH, root=folder, test_fraction=0, on_error="skip")
    with pytest.warns(UserWarning, match="broken.png"):
        assert skip.images(7).shape[0] == 7
    with pytest.raises(DataError, match=r"only 7 usable .*1 skipped"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_background("folder", PATCH, root=folder, test_fraction=0, on_error="skip").images(8)

    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(_rgb(30, 30, 0)).save(small / "ok.png")
    Image.fromarray(_rgb(8, 40, 1)).save(small / "tiny.png")
    with pytest.raises(DataError, match=r"tiny.png is 40x8, smaller than the patch 16"):
        make_background("folder", PATCH, root=small, test_fraction=0).images(2)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=f"{empty}.*holds no images"):
        make_background("folder", PATCH, root=empty)
    with pytest.raises(DataError, match="does not exist"):
        make_background("folder", PATCH, root=tmp_path / "missing")
    with pytest.raises(ConfigError, match="option 'root'"):
        make_background("folder", PATCH)
    with pytest.raises(ConfigError, match="option 'on_error' must be 'raise' or 'skip'"):
        make_background("folder", PATCH, root=folder, on_error="ignore")
    with pytest.raises(ConfigError, match="option 'test_fraction'"):
        make_background("folder", PATCH, root=folder, test_fraction=1.0)


def test_folder_duplicates_are_skipped_and_fit_modes(tmp_path):
    root = tmp_path / "dup"
    root.mkdir()
    img = _rgb(40, 32, 3)
    Image.fromarray(img).save(root / "one.png")
    Image.fromarray(img).save(root / "two.png")
    Image.fromarray(_rgb(40, 32, 4)).save(root / "three.png")
    src = make_background("folder", PATCH, root=root, test_fraction=0, size=24)
    with pytest.warns(UserWarning, match="same pixels"):
        with pytest.raises(DataError, match="only 2 usable"):
            src.images(3)
    crop = make_background("folder", PATCH, root=root, test_fraction=0, size=24, fit="crop")
    resized = make_background("folder", PATCH, root=root, test_fraction=0, size=24, fit="resize")
    c, r = crop.images(1), resized.images(1)
    assert crop.files()[0] == resized.files()[0]
    name = crop.files()[0].name
    ref = np.asarray(Image.open(root / name))[8:32, 4:28] / 255.0  # native-resolution centre window
    assert torch.allclose(c[0], torch.from_numpy(ref).permute(2, 0, 1).float())
    assert not torch.allclose(c, r)


def test_distinct_contents_counts_the_pictures_behind_crops():
    from probe.data.backgrounds import make_background
    from probe.data.backgrounds.bundled import NATURAL_TEST, NATURAL_TRAIN, TEXTURES

    natural = make_background("natural", patch=16)
    assert natural.distinct_contents(3) == 3
    assert natural.distinct_contents(256) == len(NATURAL_TRAIN) == 5
    assert natural.distinct_contents(256, split="test") == len(NATURAL_TEST)
    assert make_background("texture", patch=16).distinct_contents(64) == len(TEXTURES)
    for name in ("smooth", "dead_leaves", "faces"):
        assert make_background(name, patch=16).distinct_contents(20) == 20
