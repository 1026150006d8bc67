"""Model families: a registry of image-to-image networks with named probe points.

Add a family with one file and one line in ``FAMILIES`` below (or ``@FAMILIES.register("name")`` in user
code)::

    from probe.models import build
    model = build("resnet", size="tiny", global_residual=False)
"""

from __future__ import annotations

from typing import Any

from probe.models.base import HookPoint, RestorationModel
from probe.registry import Registry

FAMILIES = Registry(
    "model family",
    lazy={
        "resnet": "probe.models.resnet:ResNet",
        "unet": "probe.models.unet:UNet",
        "swinir": "probe.models.swinir:SwinIR",
        "nafnet": "probe.models.nafnet:NAFNet",
        "prior_restorer": "probe.models.prior_restorer:PriorRestorer",
        "external": "probe.models.external:External",  # any user nn.Module: arch = "FILE.py:Class"
    },
)


def build(family: str, size: str = "tiny", **kwargs: Any) -> RestorationModel:
    """Build a model of a registered ``family`` with a size preset and keyword overrides.

    A nested ``kwargs`` mapping is unpacked, so a model's ``.spec`` rebuilds it: ``build(**model.spec)``.
    """
    nested = kwargs.pop("kwargs", None)
    if nested is not None:
        kwargs = {**dict(nested), **kwargs}
    cls = FAMILIES.get(family)
    return cls(size=size, **kwargs)


__all__ = ["FAMILIES", "HookPoint", "RestorationModel", "build"]
