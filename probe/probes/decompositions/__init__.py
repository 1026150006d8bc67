"""Content decompositions of the ``decomposition`` probe, one file each, chosen by the degradation.

Every degradation class names its decomposition (``Degradation.decomposition``): ``"rain"`` (the papers'
decoupled rain / background metrics only, nothing added — derain results are unchanged), ``"noise"``
(flat vs textured regions of B, frequency bands of the error) or ``"blur"`` (edge vs flat regions of B,
frequency bands of the detail lost). A decomposition is a function ``(output, degraded, clean) ->
{quantity: (N,) float64}`` with a ``QUANTITIES`` list; formulas in ``docs/probes.md``::

    from probe.probes.decompositions import content_quantities
    q = content_quantities("noise", output, batch.degraded, batch.clean)   # {"noise_removed_flat": (N,), ...}
"""

from __future__ import annotations

from typing import Any

from probe.registry import Registry

#: decomposition name -> "module:function"; "rain" adds nothing to the papers' decoupled metrics
DECOMPOSITIONS = Registry(
    "decomposition",
    lazy={
        "noise": "probe.probes.decompositions.noise:noise_quantities",
        "blur": "probe.probes.decompositions.blur:blur_quantities",
    },
)
RAIN = "rain"


def decomposition_of(degradation: Any) -> str:
    """The decomposition a degradation declares (``"rain"`` for one that declares none)."""
    return str(getattr(degradation, "decomposition", RAIN) or RAIN)


def quantity_names(name: str) -> list[str]:
    """The quantities decomposition ``name`` adds, in order (empty for ``"rain"``); each decomposition
    function carries them as its ``quantities`` attribute."""
    return [] if name == RAIN else list(DECOMPOSITIONS.get(name).quantities)


def content_quantities(name: str, output: Any, degraded: Any, clean: Any) -> dict[str, Any]:
    """Per-image quantities of decomposition ``name`` ({} for ``"rain"``). Tensors (N, 3, H, W) in [0, 1]."""
    if name == RAIN:
        return {}
    return DECOMPOSITIONS.get(name)(output, degraded, clean)


__all__ = ["DECOMPOSITIONS", "RAIN", "content_quantities", "decomposition_of", "quantity_names"]
