"""``probe synth``: synthesise degraded pairs, draw a contact sheet, print the backgrounds' complexity.

    probe synth --background natural --degradation rain --preset small --n 8 --seed 0 --out reports/synth

Python::

    >>> from probe.data.synth import synthesize
    >>> batch = synthesize("smooth", "rain", preset="large", n=2, patch=32, seed=0)
    >>> batch.degraded.shape
    torch.Size([2, 3, 32, 32])

The contact sheet has one row per image and four columns: clean background, degradation layer (rain: beta R
as grey; signed layers such as noise and blur: 0.5 + D / (2 max|D|)), binary mask, degraded image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probe.data.types import DegradedBatch
from probe.errors import ConfigError

COLUMNS = ("clean", "layer", "mask", "degraded")
MIN_TILE = 128  # tiles are enlarged (nearest neighbour) to at least this many pixels


def _center_crop(images: Tensor, patch: int) -> Tensor:
    h, w = images.shape[-2:]
    top, left = (h - patch) // 2, (w - patch) // 2
    return images[..., top:top + patch, left:left + patch].contiguous()


def synthesize(background: str = "natural", degradation: str = "rain", preset: str | None = None, n: int = 8,
               patch: int = 128, seed: int = 0, background_options: dict[str, Any] | None = None,
               degradation_options: dict[str, Any] | None = None) -> DegradedBatch:
    """Degrade the first ``n`` "train" images of a background source (centre-cropped to ``patch``).

    ``degradation_options`` are extra spec keys (e.g. ``{"angle": [[-40, -20], [20, 40]]}``); the generator
    is seeded with ``seed``, so the same call gives the same batch.
    """
    from probe.data.backgrounds import make_background
    from probe.data.degradations import make_degradation

    for key, value, lo in (("n", n, 1), ("patch", patch, 8), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"synth: {key!r} must be an integer >= {lo}, got {value!r}")
    spec: dict[str, Any] = {"type": degradation, **dict(degradation_options or {})}
    if preset is not None:
        spec["preset"] = preset
    deg = make_degradation(spec)
    source = make_background(background, patch, seed=seed, **dict(background_options or {}))
    clean = _center_crop(source.images(n, split="train"), patch)
    return deg.apply(clean, torch.Generator().manual_seed(seed))


def _layer_view(layer: Tensor) -> Tensor:
    """Displayable layer in [0, 1]: as is when non-negative (rain), else 0.5 + D / (2 max|D|) per image."""
    if float(layer.min()) >= 0:
        return layer.clamp(0, 1)
    peak = layer.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + layer / (2 * peak)).clamp(0, 1)


def contact_sheet(batch: DegradedBatch, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG grid (rows = images; columns clean / layer / mask / degraded) and return its path.

    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "sheet.png"
    >>> contact_sheet(synthesize("smooth", n=2, patch=16), out).stat().st_size > 0
    True
    """
    from PIL import Image, ImageDraw

    from probe.fsutil import atomic_path

    b = batch.to("cpu")
    n, _, h, w = b.clean.shape
    zoom = max(1, -(-MIN_TILE // max(h, w)))
    th, tw = h * zoom, w * zoom
    gap, header = 4, 18 + (16 if title else 0)
    columns = [b.clean, _layer_view(b.layer), b.mask.expand(-1, 3, -1, -1), b.degraded]
    sheet = Image.new("RGB", (len(columns) * (tw + gap) + gap, header + n * (th + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, 2), title, fill="black")
    for j, name in enumerate(COLUMNS):
        draw.text((gap + j * (tw + gap), header - 16), name, fill="black")
    for i in range(n):
        for j, col in enumerate(columns):
            tile = (col[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            tile = np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1)
            sheet.paste(Image.fromarray(tile), (gap + j * (tw + gap), header + gap + i * (th + gap)))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE options to a dict (JSON values when they parse — numbers, true/false, lists — else strings).

    >>> parse_options(["complexity=0.5", "root=/data"])
    {'complexity': 0.5, 'root': '/data'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--background-option {item!r} must be KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _score_table(images: Tensor) -> str:
    from probe.data.complexity import score_images

    frame = score_images(images)
    frame.loc["mean"] = frame.mean(skipna=True)
    return frame.to_string(float_format=lambda v: f"{v:.3f}")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``probe synth`` (arguments defined in :mod:`probe.cli`)."""
    options = parse_options(list(args.background_option or []))
    batch = synthesize(args.background, args.degradation, preset=args.preset, n=args.n, patch=args.patch,
                       seed=args.seed, background_options=options)
    from probe.data.degradations import make_degradation

    spec = {"type": args.degradation, **({"preset": args.preset} if args.preset else {})}
    description = make_degradation(spec).describe()
    out = Path(args.out)
    title = f"{args.background} x {args.degradation} ({description.get('preset') or 'custom'}), seed {args.seed}"
    sheet = contact_sheet(batch, out / "contact_sheet.png", title=title)
    print(f"degradation: {json.dumps(description)}")
    print(f"background complexity ({args.background}, {args.n} images of {args.patch} px):")
    print(_score_table(batch.clean))
    print(f"contact sheet: {sheet}")
    return 0
