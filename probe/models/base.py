"""Base class of every model family and the named ``HookPoint`` where probes look.

A family places a :class:`HookPoint` wherever an activation matters — including the functional global
residual add, which a forward hook on a module would not see — in the spirit of TransformerLens::

    self.hook_residual = HookPoint()
    ...
    return self.hook_residual(x - layer)   # a named, hookable place for a functional operation

``model.probe_points()`` lists their names in forward order; probes read activations there and never guess.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from probe.errors import ConfigError


class HookPoint(nn.Identity):
    """A named identity module: a stable place to read (or patch) an activation with a forward hook."""


class RestorationModel(nn.Module):
    """An image-to-image network: NCHW float RGB in [0, 1] of any H×W in, the same shape out.

    Subclasses set ``sizes`` (presets ``tiny``, ``small``, ``paper`` → keyword arguments) and build their
    layers from ``self.hparams``; :func:`probe.models.build` creates them from a family name.
    """

    family: ClassVar[str] = ""
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}
    #: a convolutional family: the trainer uses the channels-last memory format for it on CUDA
    channels_last: ClassVar[bool] = False

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__()
        if size not in self.sizes:
            raise ConfigError(f"unknown size {size!r} for family {self.family!r}; "
                              f"allowed: {', '.join(self.sizes)}")
        self.size = size
        self.kwargs = dict(kwargs)
        self.hparams: dict[str, Any] = {**self.sizes[size], **kwargs}

    @property
    def spec(self) -> dict[str, Any]:
        """What it takes to rebuild this model: ``build(**spec)``."""
        return {"family": self.family, "size": self.size, "kwargs": dict(self.kwargs)}

    def probe_points(self) -> list[str]:
        """Names (as in ``named_modules``) of the model's HookPoints, in forward order."""
        return [name for name, module in self.named_modules() if isinstance(module, HookPoint)]

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
