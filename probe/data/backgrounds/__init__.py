"""Background sources of controlled complexity (a registry; see :class:`BackgroundSource`)."""

from __future__ import annotations

from probe.registry import Registry

BACKGROUNDS = Registry(
    "background source",
    lazy={
        "smooth": "probe.data.backgrounds.smooth:Smooth",
        "dead_leaves": "probe.data.backgrounds.dead_leaves:DeadLeaves",
        "faces": "probe.data.backgrounds.bundled:Faces",
        "natural": "probe.data.backgrounds.bundled:Natural",
        "texture": "probe.data.backgrounds.bundled:Texture",
        "folder": "probe.data.backgrounds.folder:Folder",
        "mixture": "probe.data.backgrounds.mixture:Mixture",
    },
)


def make_background(name: str, patch: int, seed: int = 0, **options):
    """Build the background source registered as ``name`` (options validated by the source).

    >>> make_background("dead_leaves", patch=32, seed=1, complexity=0.5).images(2).shape
    torch.Size([2, 3, 64, 64])
    """
    return BACKGROUNDS.get(name)(patch, seed=seed, **options)


def __getattr__(attr: str):  # lazy re-exports: importing the registry never imports torch
    if attr in ("BackgroundSource", "BackgroundPool"):
        from probe.data.backgrounds import base

        return getattr(base, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["BACKGROUNDS", "BackgroundPool", "BackgroundSource", "make_background"]
