"""The one image reader of ``probe``: a file → (H, W, 3) float32 RGB in [0, 1], scaled by its bit depth.

>>> from probe.data.images import read_image
>>> read_image("photo.png").shape                      # doctest: +SKIP
(480, 640, 3)

Every reader of the project (``folder`` backgrounds, paired folders) goes through :func:`read_image`.

* **One scale per pixel type**, never a per-image guess (the convention of ``skimage.util.img_as_float``):
  ``uint8`` / 255, ``uint16`` / 65 535, ``uint32`` / (2³² − 1), signed ``intN`` / (2^(N−1) − 1) with negative
  values clipped to 0, ``bool`` 0 / 1, floating point as stored (clipped to [0, 1]; NaN/Inf refused).
  A 16-bit PNG is 16-bit whatever mode Pillow opens it in (Pillow 10.0 opens 16-bit grey PNGs as 32-bit
  mode ``I``); a TIFF's ``BitsPerSample`` decides for Pillow's ``I`` / ``I;16`` modes.
* Grey, grey+alpha, palette (PNG/GIF/BMP/TIFF colour maps; 16-bit TIFF map entries taken as ``>> 8`` as
  libtiff does), RGB, RGBA, CMYK and YCbCr become RGB; alpha is dropped. TIFFs are decoded by ``tifffile``
  (full precision, planar or contiguous samples; ``MinIsWhite`` inverted) with Pillow as fallback; everything
  else by Pillow.
* The EXIF / TIFF ``Orientation`` tag is applied as image viewers do (values 1–8, EXIF 2.32 §4.6.4).
* A file that cannot be decoded, is truncated, or has an unsupported pixel layout raises one
  :class:`~probe.errors.DataError` line naming the file.
* **Bounded memory.** The pixel count is read from the header and checked against a decode limit
  (:func:`max_pixels`: 64 Mpixel, or ``PROBE_MAX_IMAGE_PIXELS``) *before* anything is decoded, so a
  decompression bomb (a small file that decodes to a huge image) is refused in one line instead of filling
  memory; Pillow's own limit (a warning at 89 Mpixel, an error at 179) is replaced by this one. ``crop`` /
  ``half`` cut the window wanted from the decoded pixels before they become float32, so holding a crop of a
  large photo costs the crop, not the photo.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import DataError, one_line

ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 × 8000; a 6000 × 4000 camera frame is 24 Mpixel


def max_pixels() -> int:
    """The decode limit in pixels: ``PROBE_MAX_IMAGE_PIXELS`` if set (a positive integer), else 64 000 000."""
    text = os.environ.get("PROBE_MAX_IMAGE_PIXELS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise DataError(f"PROBE_MAX_IMAGE_PIXELS={text!r}: expected a positive integer") from None
        if value > 0:
            return value
        raise DataError(f"PROBE_MAX_IMAGE_PIXELS={text!r}: expected a positive integer")
    return DEFAULT_MAX_PIXELS


def read_image(path: str | os.PathLike[str] | bytes, crop: tuple[int, int] | None = None,
               half: str | None = None, square: bool = False) -> np.ndarray:
    """One image file as an (H, W, 3) float32 array in [0, 1] (see the module doc for the scales).

    ``crop`` = (h, w): only the centred window of at most h × w pixels is kept (cut before conversion to
    float, so a large image costs its decoded size once, not four times); ``half`` = ``"left"`` / ``"right"``:
    that half of a side-by-side image (⌊W/2⌋ columns each), before ``crop``; ``square``: the window is the
    centred square of side min(h, w, H, W).

    Raises DataError naming the file when it is missing, unreadable, truncated, larger than the decode limit
    (:func:`max_pixels`) or of an unsupported layout.
    """
    return _read(path, crop, half, square)[0]


def read_region(path: str | os.PathLike[str] | bytes, crop: tuple[int, int] | None = None,
                half: str | None = None, square: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` and the full (oriented) size (H, W) of the image or half it was cut from."""
    return _read(path, crop, half, square)


def _read(path: str | os.PathLike[str] | bytes, crop: tuple[int, int] | None, half: str | None,
          square: bool) -> tuple[np.ndarray, tuple[int, int]]:
    path = Path(os.fsdecode(path))
    if half not in (None, "left", "right"):
        raise DataError(f"half must be None, 'left' or 'right', got {half!r}")
    errors: list[str] = []
    decoded: tuple[np.ndarray, int, tuple[int, int]] | None = None
    limit = max_pixels()
    window = (crop, half, square)
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            decoded = _read_tifffile(path, limit, window)
        except DataError:
            raise
        except Exception as exc:  # fall back to Pillow
            errors.append(f"{type(exc).__name__}: {exc}")
    if decoded is None:
        try:
            decoded = _read_pillow(path, limit, window)
        except DataError:
            raise
        except Exception as exc:  # any decoder failure means unreadable
            errors.append(f"{type(exc).__name__}: {exc}")
    if decoded is None:
        raise DataError(one_line(f"cannot read image {_shown(path)}: {errors[-1]}"))
    arr, orientation, size = decoded
    try:
        out = orient(to_rgb_float(arr), orientation)
    except ValueError as exc:
        raise DataError(one_line(f"cannot read image {_shown(path)}: {exc}")) from None
    if arr.dtype.kind in "iu" and arr.dtype.itemsize >= 4 and out.size and out.max() < 1.0 / 255.0:
        warnings.warn(one_line(
            f"image {_shown(path)}: {arr.dtype.itemsize * 8}-bit integer pixels scaled by their full range are "
            f"black (max {arr.max()} of {np.iinfo(arr.dtype).max}); store 16-bit data as uint16"), stacklevel=3)
    return out, size


def _shown(path: Path) -> str:
    """The path as text that prints anywhere (undecodable bytes of a file name shown as \\xNN escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_limit(path: Path, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise DataError(f"image {_shown(path)} is {width}×{height} ({width * height / 1e6:.1f} Mpixel), over the "
                        f"decode limit of {limit / 1e6:g} Mpixel (a decompression bomb?); not decoded. Set "
                        "PROBE_MAX_IMAGE_PIXELS to read larger images")


# ----------------------------------------------------------------------------------------- regions
Window = tuple[tuple[int, int] | None, str | None, bool]  # crop, half, square (read_region's arguments)


def _window(height: int, width: int, window: Window) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The (top, left, h, w) box to keep of an oriented H × W image and the size of the image (or half)."""
    crop, half, square = window
    left = 0
    if half is not None:
        if width < 2:
            raise ValueError(f"a side-by-side image needs two halves, width is {width}")
        left, width = (0 if half == "left" else width - width // 2), width // 2
    top, h, w = 0, height, width
    if crop is not None:
        h, w = min(int(crop[0]), height), min(int(crop[1]), width)
        if square:
            h = w = min(h, w)
        top, left = (height - h) // 2, left + (width - w) // 2
    return (top, left, h, w), (height, width)


def stored_box(orientation: int, height: int, width: int,
               box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The (top, left, h, w) box of the *stored* H × W pixels that :func:`orient` turns into ``box`` of the
    oriented image (EXIF orientations 1–8; transposing ones swap the box's sides)."""
    top, left, h, w = box
    flip_r, flip_c = height - top - h, width - left - w  # for the mirrored axes
    if orientation == 2:
        return top, width - left - w, h, w
    if orientation == 3:
        return flip_r, flip_c, h, w
    if orientation == 4:
        return height - top - h, left, h, w
    if orientation == 5:
        return left, top, w, h
    if orientation == 6:
        return height - left - w, top, w, h
    if orientation == 7:
        return height - left - w, width - top - h, w, h
    if orientation == 8:
        return left, width - top - h, w, h
    return box


def _oriented_size(orientation: int, height: int, width: int) -> tuple[int, int]:
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _cut(arr: np.ndarray, orientation: int, window: Window) -> tuple[np.ndarray, tuple[int, int]]:
    """The stored pixels ``arr`` (H, W[, C]) cut to the window asked for (before :func:`orient`)."""
    h, w = arr.shape[:2]
    oh, ow = _oriented_size(orientation, h, w)
    box, size = _window(oh, ow, window)
    top, left, bh, bw = stored_box(orientation, h, w, box)
    return arr[top:top + bh, left:left + bw], size


# ------------------------------------------------------------------------------------------- decoders
def _read_tifffile(path: Path, limit: int, window: Window) -> tuple[np.ndarray, int, tuple[int, int]]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2, 3):  # MinIsWhite, MinIsBlack, RGB, Palette; others: Pillow
            raise ValueError(f"photometric {photometric} left to Pillow")
        _check_limit(path, int(page.imagewidth), int(page.imagelength), limit)
        tag = page.tags.get("Orientation")
        orientation = int(tag.value) if tag is not None else 1
        arr = page.asarray()
        if arr.ndim == 3 and page.planarconfig == 2 and arr.shape[0] <= 4:  # planar (C, H, W)
            arr = np.moveaxis(arr, 0, -1)
        arr, size = _cut(arr, orientation, window)
        if photometric == 3:
            if page.colormap is None:
                raise ValueError("palette TIFF without a colour map")
            cmap = np.asarray(page.colormap)  # (3, 2**bits) uint16
            if arr.ndim == 3:  # index + extra (alpha) samples
                arr = arr[..., 0]
            if cmap.max() > 255:  # 16-bit entries → 8-bit colours, as libtiff (and Pillow) do
                cmap = cmap >> 8
            arr = np.moveaxis(cmap[:, np.asarray(arr).astype(np.intp)], 0, -1).astype(np.uint8)
        elif photometric == 0:
            arr = _invert(arr)
        return np.asarray(arr), orientation, size


def _invert(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return ~arr
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return np.iinfo(arr.dtype).max - arr
    if np.issubdtype(arr.dtype, np.floating):
        return 1.0 - arr
    raise ValueError(f"MinIsWhite with pixel type {arr.dtype}")


def _read_pillow(path: Path, limit: int, window: Window) -> tuple[np.ndarray, int, tuple[int, int]]:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # probe's own limit (checked on the header, before decoding) applies
        try:
            with Image.open(path) as img:
                _check_limit(path, img.size[0], img.size[1], limit)
                img.load()
                orientation = int(img.getexif().get(ORIENTATION_TAG, 1) or 1)
                bits = _stored_bits(img)
                oh, ow = _oriented_size(orientation, img.size[1], img.size[0])
                box, size = _window(oh, ow, window)
                top, left, bh, bw = stored_box(orientation, img.size[1], img.size[0], box)
                part = img if (bh, bw) == (img.size[1], img.size[0]) else img.crop((left, top, left + bw,
                                                                                     top + bh))
                return _pillow_array(part, bits), orientation, size
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _pillow_array(img: Any, bits: int | None) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA", "F") or mode.startswith("I;16"):
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img.convert("L")) > 0
    if mode == "I":
        arr = np.asarray(img)
        if bits is not None and bits <= 16:  # 16-bit data Pillow widened to int32: its own scale, not int32's
            return np.clip(arr, 0, 2 ** bits - 1).astype(np.uint16 if bits > 8 else np.uint8)
        return arr
    has_alpha = "A" in mode or "a" in mode or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))


def _stored_bits(img: Any) -> int | None:
    """Bits per sample in the file behind a Pillow mode ``I`` image (None: unknown, keep int32's scale)."""
    if img.format == "PNG":
        return 16  # PNG samples have at most 16 bits
    if img.format == "TIFF":
        tag = getattr(img, "tag_v2", {}).get(258)  # BitsPerSample
        if tag is not None:
            return int(tag[0] if isinstance(tag, tuple) else tag)
    return None


# ------------------------------------------------------------------------------------------ conversion
def to_rgb_float(arr: np.ndarray) -> np.ndarray:
    """Decoded pixels (H, W), (H, W, C) or planar (C, H, W), C ≤ 4 → (H, W, 3) float32 in [0, 1].

    The scale depends on the pixel type only (module doc). ValueError for other layouts or types."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] > 4:  # planar (C, H, W)
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"unsupported pixel layout {arr.shape}")
    arr = arr[..., :1] if arr.shape[-1] in (1, 2) else arr[..., :3]  # drop alpha
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = _scaled(arr, float(np.iinfo(arr.dtype).max))
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError("non-finite pixel values")
    else:
        raise ValueError(f"unsupported pixel type {arr.dtype}")
    out = np.clip(out, 0.0, 1.0)
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else np.ascontiguousarray(out)


def _scaled(arr: np.ndarray, peak: float, rows_per_block: int | None = None) -> np.ndarray:
    """``arr / peak`` as float32, computed in float64 a block of rows at a time (bounded temporary memory)."""
    out = np.empty(arr.shape, np.float32)
    step = rows_per_block or max(1, (1 << 20) // max(1, int(np.prod(arr.shape[1:]))))
    for r in range(0, arr.shape[0], step):
        out[r:r + step] = arr[r:r + step].astype(np.float64) / peak
    return out


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF ``Orientation`` value (1–8; others are ignored) to an (H, W, ...) array."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)
