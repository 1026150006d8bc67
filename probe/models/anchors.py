"""Calibration anchors: reference networks of known behaviour that any probe can run beside a study's models.

An indicator measures what it claims only if it tells these apart (issue 12):

==========  ==========================================================================================
anchor      behaviour
==========  ==========================================================================================
identity    returns its input: removes nothing — the shortcut of a network that learned neither
oracle      returns the clean background B of its input: removes all of the degradation and nothing else
untrained   the study's family and size, randomly initialised (seed 0), never trained
single      the study's training config trained on a single background (``n_backgrounds = 1``)
==========  ==========================================================================================

``identity`` and ``oracle`` have two probe points, ``hook_input`` (the input) and ``hook_output`` (the
output), so representation probes (CKA, activations, DDR) run on them too; ``untrained`` and ``single`` are
ordinary models of the study's family (:func:`untrained`; ``single`` is trained by
:func:`probe.anchors.single_background_run`).

**How the oracle gets B.** The oracle needs the clean background of every image it is given. It keeps a
table of (input, background) pairs handed over with :meth:`Oracle.feed` — :func:`feed` does it for any model
and is a no-op for other models. Probes feed every batch they synthesise (the evaluation splits with their
clean images and degradation layers; re-synthesised inputs of DDR and activations). For an input the oracle
finds the stored input of the same size with the highest Pearson correlation (an exact stored input, and
every point α·x of an attribution path from a zero baseline, correlates 1 with its source) and returns that
input's background (a flat image, e.g. the all-zero start of a path, is returned unchanged); below a
correlation of :data:`MIN_MATCH` it raises :class:`~probe.errors.DataError` (it was given an image it was
never told about). The oracle is not translation-equivariant, so attribution
never crops its inputs (``croppable = False``).

>>> import torch
>>> clean = torch.rand(2, 3, 8, 8); rainy = (clean + 0.3).clamp(0, 1)
>>> oracle = Oracle(); oracle.feed(rainy, clean)
>>> bool(torch.equal(oracle(rainy), clean)), bool(torch.equal(Identity()(rainy), rainy))
(True, True)
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor, nn

from probe.errors import ConfigError, DataError
from probe.models.base import HookPoint

ANCHORS = ("identity", "oracle", "untrained", "single")
MIN_MATCH = 0.5  # lowest Pearson correlation with a stored input for the oracle to answer


class AnchorModel(nn.Module):
    """Base of the parameter-free anchors: a scalar weight fixed at 1 (so probes find a device and a dtype)
    and the probe points ``hook_input`` and ``hook_output``."""

    role = ""  # the anchor's name (set by subclasses), as stored in the model info
    anchor = ""
    croppable = True

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Parameter(torch.ones(()), requires_grad=False)
        self.hook_input = HookPoint()
        self.hook_output = HookPoint()

    @property
    def spec(self) -> dict[str, Any]:
        return {"family": f"anchor:{self.anchor}", "size": "", "kwargs": {}}

    def probe_points(self) -> list[str]:
        return ["hook_input", "hook_output"]

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_output(self.restore(self.hook_input(x * self.one)))

    def restore(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Identity(AnchorModel):
    """Returns its input (removes nothing)."""

    anchor = role = "identity"

    def restore(self, x: Tensor) -> Tensor:
        return x


class Oracle(AnchorModel):
    """Returns the clean background of its input, looked up in the pairs handed over by :meth:`feed`."""

    anchor = role = "oracle"
    croppable = False

    def __init__(self) -> None:
        super().__init__()
        self._inputs: dict[tuple[int, ...], list[Tensor]] = {}
        self._targets: dict[tuple[int, ...], list[Tensor]] = {}
        self._fed: set[tuple[Any, ...]] = set()

    def feed(self, inputs: Tensor, targets: Tensor) -> None:
        """Remember that each of ``inputs`` (N, C, H, W) has the clean background ``targets`` (same shape)."""
        if inputs.shape != targets.shape or inputs.dim() != 4:
            raise DataError(f"oracle: inputs {tuple(inputs.shape)} and backgrounds {tuple(targets.shape)} must "
                            "be (N, C, H, W) of one shape")
        seen = tuple(hashlib.sha1(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
                     for t in (inputs, targets))
        if seen in self._fed:  # the same pairs handed over again (each probe feeds the evaluation set)
            return
        self._fed.add(seen)
        key = tuple(inputs.shape[1:])
        self._inputs.setdefault(key, []).append(inputs.detach().float().cpu())
        self._targets.setdefault(key, []).append(targets.detach().float().cpu())

    def feed_batch(self, batch: Any) -> None:
        """Feed a :class:`~probe.data.types.DegradedBatch`: degraded → clean, clean → clean, and the
        degradation on black (``clamp(layer, 0, 1)``, the CKA probe's input) → black."""
        layer = batch.layer.clamp(0, 1)
        self.feed(batch.degraded, batch.clean)
        self.feed(batch.clean, batch.clean)
        self.feed(layer, torch.zeros_like(layer))

    def restore(self, x: Tensor) -> Tensor:
        key = tuple(x.shape[1:])
        if key not in self._inputs:
            raise DataError(f"oracle: no background known for inputs of shape {key}; hand the evaluation "
                            "batches over with probe.models.anchors.feed(model, degraded, clean)")
        stored = torch.cat(self._inputs[key]).flatten(1).double()
        targets = torch.cat(self._targets[key])
        z = x.detach().cpu().flatten(1).double()
        zc = z - z.mean(1, keepdim=True)
        sc = stored - stored.mean(1, keepdim=True)
        corr = (zc @ sc.T) / (zc.norm(dim=1, keepdim=True) * sc.norm(dim=1).view(1, -1)).clamp_min(1e-30)
        # exact stored inputs first (a clean image and its degraded version can both correlate highly)
        zz, ss = (z * z).sum(1, keepdim=True), (stored * stored).sum(1).view(1, -1)
        dist = (zz + ss - 2 * (z @ stored.T)).clamp_min(0)
        corr = torch.where(dist <= 1e-12 * (zz + 1e-30), torch.full_like(corr, 2.0), corr)
        best, index = corr.max(1)
        flat = zc.norm(dim=1) <= 1e-12 * z.norm(dim=1).clamp_min(1e-30)  # a flat image: nothing to remove
        best = torch.where(flat, torch.full_like(best, 2.0), best)
        if bool((best < MIN_MATCH).any()):
            raise DataError(f"oracle: an input matches no image it was given (best correlation "
                            f"{float(best.min()):.2f} < {MIN_MATCH}); feed the batches the probe evaluates")
        out = torch.where(flat.view(-1, 1, 1, 1).to(x.device), x.detach(), targets[index].to(x.device, x.dtype))
        return out + 0.0 * x  # constant in x, but part of the autograd graph (zero gradients, not None)


def feed(model: nn.Module, inputs: Any, targets: Tensor | None = None) -> None:
    """Hand (input, clean background) pairs to ``model`` if it is an oracle (else nothing happens).

    ``inputs`` is a tensor (with ``targets``), a :class:`~probe.data.types.DegradedBatch`, or an object with
    ``.splits`` (an :class:`~probe.probes.base.EvalData`: every split's batch is fed).
    """
    if not isinstance(model, Oracle):
        return
    if hasattr(inputs, "splits"):
        for batch in inputs.splits.values():
            model.feed_batch(batch)
    elif hasattr(inputs, "degraded"):
        model.feed_batch(inputs)
    else:
        if targets is None:
            raise DataError("oracle: feed(model, inputs, targets) needs the clean backgrounds")
        model.feed(inputs, targets)


def untrained(family: str, size: str = "tiny", seed: int = 0, **kwargs: Any) -> nn.Module:
    """A randomly initialised model of ``family``/``size`` (``torch.manual_seed(seed)`` for the weights), in
    eval mode, tagged ``role = anchor = "untrained"``."""
    from probe.models import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build(family, size=size, **kwargs)
    model.role, model.anchor = "untrained", "untrained"  # type: ignore[attr-defined]
    return model.eval()


def make_anchor(name: str, *, family: str | None = None, size: str = "tiny", seed: int = 0) -> nn.Module:
    """``identity``, ``oracle`` or ``untrained`` (needs ``family``); ``single`` needs training, see
    :func:`probe.anchors.single_background_run`."""
    if name == "identity":
        return Identity().eval()
    if name == "oracle":
        return Oracle().eval()
    if name == "untrained":
        if family is None:
            raise ConfigError("anchor 'untrained' needs the model family (the study's)")
        return untrained(family, size, seed)
    if name == "single":
        raise ConfigError("anchor 'single' is a trained model: use probe.anchors.single_background_run")
    raise ConfigError(f"unknown anchor {name!r}; allowed: {', '.join(ANCHORS)}")


def parse_anchors(value: Any) -> list[str]:
    """``"identity,oracle"`` or a list → validated anchor names (ConfigError naming the bad one)."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value or [])
    names = [n for n in names if n]
    for n in names:
        if n not in ANCHORS:
            raise ConfigError(f"--anchors: unknown anchor {n!r}; allowed: {', '.join(ANCHORS)}")
    return list(dict.fromkeys(names))


__all__ = ["ANCHORS", "MIN_MATCH", "AnchorModel", "Identity", "Oracle", "feed", "make_anchor", "parse_anchors",
           "untrained"]
