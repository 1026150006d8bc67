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
    },
)
