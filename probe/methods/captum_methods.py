"""captum's attribution methods on an :class:`~probe.methods.integrated_gradients.ObjectiveForward`.

captum methods (:func:`captum_attribute`): ``saliency``, ``input_x_gradient``, ``smoothgrad`` (NoiseTunnel
over Saliency, seeded) and ``captum_ig`` (captum's IntegratedGradients, for cross-checks and benchmarks).
Methods are looked up by name in :data:`CAPTUM_METHODS` (name → :class:`CaptumMethod`: the ``captum.attr``
class, whether NoiseTunnel wraps it, what its output is, and its call options); adding one is one table row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from probe.errors import ConfigError
from probe.methods.integrated_gradients import PathAttribution, _as_tuple, _evaluate, _index_extra

__all__ = ["CAPTUM_METHODS", "CaptumMethod", "captum_attribute"]


@dataclass(frozen=True)
class _Call:
    """What one group of images passes to a captum method's ``attribute``."""

    xs: tuple[Tensor, ...]
    extra: tuple[Any, ...] | None
    base: tuple[Tensor, ...] | None
    rows: int
    steps: int
    quadrature_method: str
    internal_batch_size: int | None
    nt_samples: int
    stdev: float


@dataclass(frozen=True)
class CaptumMethod:
    """One captum method: ``cls`` (a ``captum.attr`` class name), ``noise_tunnel`` (wrap it in
    ``NoiseTunnel``), ``kind`` (``"gradient"``: signed gradients, no completeness; ``"attribution"``), and
    ``options(call) -> kwargs`` for ``attribute`` beyond the inputs and ``additional_forward_args``."""

    cls: str
    kind: str
    options: Callable[[_Call], dict[str, Any]]
    noise_tunnel: bool = False
    returns_delta: bool = False


def _smoothgrad_options(c: _Call) -> dict[str, Any]:
    per = None if c.internal_batch_size is None else max(1, int(c.internal_batch_size) // c.rows)
    return {"nt_type": "smoothgrad", "nt_samples": int(c.nt_samples), "stdevs": float(c.stdev),
            "nt_samples_batch_size": per, "abs": False}


def _ig_options(c: _Call) -> dict[str, Any]:
    return {"baselines": c.base, "n_steps": int(c.steps), "method": c.quadrature_method,
            "internal_batch_size": c.internal_batch_size, "return_convergence_delta": True}


CAPTUM_METHODS: dict[str, CaptumMethod] = {
    "saliency": CaptumMethod("Saliency", "gradient", lambda c: {"abs": False}),
    "input_x_gradient": CaptumMethod("InputXGradient", "attribution", lambda c: {}),
    "smoothgrad": CaptumMethod("Saliency", "gradient", _smoothgrad_options, noise_tunnel=True),
    "captum_ig": CaptumMethod("IntegratedGradients", "attribution", _ig_options, returns_delta=True),
}


def captum_attribute(method: str, forward: nn.Module | Callable[..., Tensor],
                     inputs: Tensor | Sequence[Tensor], *, additional: Sequence[Any] = (),
                     baselines: Tensor | Sequence[Tensor] | None = None, steps: int = 50,
                     quadrature_method: str = "gausslegendre", internal_batch_size: int | None = None,
                     nt_samples: int = 16, stdev: float = 0.1, seed: int = 0) -> PathAttribution:
    """captum's Saliency / InputXGradient / NoiseTunnel(SmoothGrad) / IntegratedGradients on ``forward``.

    ``saliency`` and ``smoothgrad`` return signed gradients (maps take |Σ_c| later), so their "attributions"
    are gradients, not contributions (``info["kind"] == "gradient"``, no completeness). SmoothGrad draws its
    noise under ``seed`` without touching the global RNG state. ``captum_ig`` with ``internal_batch_size=None``
    is captum's default call. ``internal_batch_size`` bounds the rows of every forward/backward for every
    method: images go in groups of at most that many, SmoothGrad takes ``internal_batch_size // group``
    noise samples per pass and IG as many steps (its noise draws, not its expectation, depend on the value).

    >>> f = lambda x: (3.0 * x).flatten(1).sum(1)
    >>> captum_attribute("saliency", f, torch.ones(1, 1, 2, 2)).attributions[0].flatten().tolist()
    [3.0, 3.0, 3.0, 3.0]
    """
    import captum.attr

    from probe.methods.threads import contention_aware_threads

    if method not in CAPTUM_METHODS:
        raise ConfigError(f"unknown captum method {method!r}; allowed: {', '.join(CAPTUM_METHODS)}")
    inputs_t = tuple(x.detach() for x in _as_tuple(inputs))
    n = int(inputs_t[0].shape[0])
    if internal_batch_size is not None and int(internal_batch_size) < 1:
        raise ConfigError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
    # internal_batch_size bounds the rows of every forward: images are taken in groups of at most that many,
    # and SmoothGrad / IG split their samples / steps so that group × samples (steps) stays within it.
    group = n if internal_batch_size is None else max(1, min(n, int(internal_batch_size)))
    spec = CAPTUM_METHODS[method]
    kind = spec.kind
    parts: list[tuple[Tensor, ...]] = []
    deltas: list[Tensor] = []
    devices = [inputs_t[0].device] if inputs_t[0].device.type == "cuda" else []
    with torch.enable_grad(), torch.random.fork_rng(devices=devices), \
            contention_aware_threads(inputs_t[0].device):  # see probe.methods.threads
        torch.manual_seed(int(seed))  # SmoothGrad's noise, without touching the global RNG state
        for s in range(0, n, group):
            idx = torch.arange(s, min(n, s + group), device=inputs_t[0].device)
            xs = tuple(x[idx].requires_grad_(True) for x in inputs_t)
            extra = _index_extra(tuple(additional), idx) if additional else None
            rows = len(idx)
            base = None if baselines is None or not spec.returns_delta else tuple(
                torch.zeros_like(x) if b is None
                else torch.as_tensor(b, dtype=x.dtype, device=x.device).expand_as(inputs_t[0])[idx]
                for x, b in zip(xs, _as_tuple(baselines)))
            call = _Call(xs, extra, base, rows, steps, quadrature_method, internal_batch_size, nt_samples, stdev)
            explainer = getattr(captum.attr, spec.cls)(forward)
            if spec.noise_tunnel:
                explainer = captum.attr.NoiseTunnel(explainer)
            attrs = explainer.attribute(xs, additional_forward_args=extra, **spec.options(call))
            if spec.returns_delta:
                attrs, delta = attrs
                deltas.append(delta.detach())
            parts.append(tuple(a.detach() for a in _as_tuple(attrs)))
    attrs = tuple(torch.cat(p) for p in zip(*parts))
    delta = torch.cat(deltas) if deltas else None
    f_start = None
    attrs = tuple(a.detach() for a in _as_tuple(attrs))
    inputs_t = tuple(x.detach() for x in inputs_t)
    chunk = internal_batch_size or inputs_t[0].shape[0]
    f_end = _evaluate(forward, inputs_t, tuple(additional), chunk)
    if spec.returns_delta:
        starts = (tuple(torch.zeros_like(x) for x in inputs_t) if baselines is None
                  else tuple(torch.zeros_like(x) if b is None else b
                             for x, b in zip(inputs_t, _as_tuple(baselines))))
        f_start = _evaluate(forward, starts, tuple(additional), chunk)
        delta = delta.to(f_end.dtype).detach()
    info = {"method": method, "kind": kind, "steps": int(steps) if spec.returns_delta else None,
            "quadrature": quadrature_method if spec.returns_delta else None,
            "internal_batch_size": internal_batch_size,
            "nt_samples": int(nt_samples) if spec.noise_tunnel else None,
            "stdev": float(stdev) if spec.noise_tunnel else None}
    return PathAttribution(attrs, f_end, f_start, delta, info)
