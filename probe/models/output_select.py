"""Which of a network's outputs is the restored image, and how the network behaves, checked on a probe batch.

A user network may return a tensor, or nested tuples/lists/dicts of them (multi-stage networks return
``[stage1, stage2, final]`` or ``[final, stage2, stage1]``, recurrent ones ``(final, [stages])``, some
``(B0, [stages], [maps])``; some predict the rain layer instead of the image). probe never guesses which one
it measures silently: :func:`check_network` runs the network on a small **synthetic probe batch** (smooth
backgrounds with bright slanted streaks, seeded; :func:`probe_batch`) and decides by this rule:

1. An ``output`` given by the user (``--output``) is taken as given; so is ``output_is``.
2. Every *image-shaped* tensor at any depth is a candidate (N, 3, ≥H, ≥W; selectable by its dotted path:
   ``0``, ``1.-1``, ``stages.2``, ``derained``). Each is read two ways and scored by PSNR (dB) on the
   probe batch: as the image, PSNR(c, B), and as the degradation layer, PSNR(O − c, B) (= PSNR(c, O − B)).
   A candidate is read as a **layer** when its layer reading beats its image reading by ≥ 3 dB, i.e. it is far
   from the input and close to input − clean (then restored = input − output).
3. The candidate with the best score is chosen when it beats the runner-up by ≥ 0.5 dB, or when the two are
   the same image (≥ 40 dB apart from each other: the first in order is taken). Otherwise probe refuses in
   one line listing every candidate with its numbers (pass ``--output``).
4. The chosen output is compared with the identity (the input itself, PSNR(O, B)): a chosen output more than
   0.1 dB worse than doing nothing is a warning (random or mismatched weights, a wrong ``input_range``, a
   network trained on another degradation).

The same forwards say how the network behaves (recorded in :class:`OutputChoice`, printed in the load report,
stored with the model's info):

* the **size** it accepts: 64 px first (rounded up to ``pad_multiple``), then 32, 128, 48, 96, 16, 256; the
  first that runs is the size its probe points are traced at;
* whether it **changes its input in place** (probe always hands it a copy; this says that it needed one);
* whether two forwards of the same input agree (**determinism**, max |difference| > 1e-5 is not); if a
  non-deterministic forward repeats under a fixed seed, every forward is seeded (``seeded``) so stored
  numbers repeat from run to run; if not, that is a warning.

::

    from probe.models.output_select import check_network
    choice = check_network(net)                    # net: an adapted external network (probe.load_model does this)
    choice.summary()   # "output 2 of list[3 × tensor[2, 3, 64, 64]]: the best restoration of the probe batch ..."
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from probe.errors import ConfigError, DataError, ProbeError, one_line
from probe.models.output_paths import describe, image_candidates, parse_selector, path_text, pick, tensors

#: A layer reading must beat the image reading by this much (dB) for an output to be called a layer.
LAYER_MARGIN_DB = 3.0
#: The chosen output must beat the runner-up by this much (dB), else the choice is refused.
DECIDE_MARGIN_DB = 0.5
#: Two candidates this close to each other (PSNR, dB) are the same image.
SAME_DB = 40.0
#: A chosen output this much (dB) worse than the identity is a warning.
IDENTITY_SLACK_DB = 0.1
#: Forward-to-forward max |difference| above which a network is non-deterministic.
DETERMINISM_TOL = 1e-5
#: Sides tried, in order, for the probe batch (each rounded up to pad_multiple).
SIZES = (64, 32, 128, 48, 96, 16, 256)
SEED = 0


class OutOfMemory(ProbeError):
    """A forward ran out of memory (CPU or GPU): a memory problem, not a size problem."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA/MPS OOM errors and the CPU allocator's 'can't allocate memory'."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "not enough memory" in text)


# ----------------------------------------------------------------------------------------- probe batch


def probe_batch(n: int = 2, size: int = 64, seed: int = SEED) -> tuple[Tensor, Tensor]:
    """(degraded, clean), each (n, 3, size, size) float32 in [0, 1]: smooth colour backgrounds with a mild
    texture, plus sparse bright streaks (a slanted line kernel of length ≈ size/5 on ~1.5 % of the pixels,
    amplitude 0.8). Deterministic in ``seed``. Small on purpose: it tells outputs apart, it is no benchmark."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 0.6 + 0.2
    clean = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    tex = torch.rand(n, 1, max(1, size // 4), max(1, size // 4), generator=g)
    clean = (clean + F.interpolate(tex, size=(size, size), mode="bilinear", align_corners=False) * 0.1 - 0.05)
    clean = clean.clamp(0, 1)
    seeds = (torch.rand(n, 1, size, size, generator=g) > 0.985).float() * (0.5 + 0.5 * torch.rand(
        n, 1, size, size, generator=g))
    length = max(3, size // 5) | 1
    kernel = torch.zeros(1, 1, length, length)
    c = length // 2
    for i in range(length):  # a line at ~80° from the horizontal
        kernel[0, 0, i, min(length - 1, max(0, round(c + (i - c) * 0.18)))] = 1.0
    layer = F.conv2d(seeds, kernel, padding=c).clamp(0, 1) * 0.8
    degraded = (clean + layer).clamp(0, 1)
    return degraded.contiguous(), clean.contiguous()


def psnr(a: Tensor, b: Tensor) -> float:
    """Mean over images of 10·log10(1 / MSE) (dB; signals in [0, 1]); MSE floored at 1e-10."""
    mse = (a.detach().float() - b.detach().float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


# ------------------------------------------------------------------------------------------ the record


@dataclass
class Candidate:
    """One image-shaped output, read as the image and as the layer (PSNR in dB on the probe batch)."""

    path: str
    shape: list[int]
    psnr_clean: float  # PSNR(c, B): read as the restored image
    psnr_layer: float  # PSNR(O − c, B): read as the degradation layer
    psnr_input: float  # PSNR(c, O): how close it is to the input
    reads_as: str = "image"

    @property
    def score(self) -> float:
        return self.psnr_layer if self.reads_as == "layer" else self.psnr_clean


@dataclass
class OutputChoice:
    """What :func:`check_network` found; ``summary()`` is the load report's lines, ``to_dict()`` the stored form."""

    path: str | None  # dotted path of the restored image (None: the forward returns one tensor)
    output_is: str  # "image" or "layer"
    reason: str
    structure: str
    candidates: list[Candidate] = field(default_factory=list)
    identity_psnr: float = float("nan")
    size: int = 64
    deterministic: bool = True
    max_difference: float = 0.0
    seeded: bool = False
    inplace: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def selector(self) -> tuple[int | str, ...] | None:
        return parse_selector(self.path) if self.path not in (None, "") else None

    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.path == (self.path or path_text(()))), None)

    def summary(self) -> str:
        where = f"output {self.path}" if self.path else "the output"
        lines = [f"{where} of {self.structure}, read as the {self.output_is}: {self.reason}"]
        if self.inplace:
            lines.append("the network changes its input in place: probe hands every forward a copy")
        if not self.deterministic:
            lines.append(f"the forward is not deterministic (two forwards differ by up to {self.max_difference:.2g})"
                         + ("; it repeats under a fixed seed, so every forward is seeded" if self.seeded else ""))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("identity_psnr",):
            out[key] = None if not math.isfinite(out[key]) else round(out[key], 3)
        for c in out["candidates"]:
            for key in ("psnr_clean", "psnr_layer", "psnr_input"):
                c[key] = round(c[key], 3)
        return out


def _table(cands: list[Candidate], identity: float) -> str:
    return "; ".join(f"{c.path}: {c.psnr_clean:.2f} dB as image, {c.psnr_layer:.2f} dB as layer"
                     for c in cands) + f" (input itself {identity:.2f} dB)"


def decide(cands: list[Candidate], identity: float, given: tuple[int | str, ...] | None,
           output_is: str | None, same: dict[tuple[str, str], float] | None = None,
           structure: str = "") -> tuple[Candidate, str]:
    """Apply the rule of the module docstring to scored candidates; returns (chosen, reason) or raises
    :class:`ConfigError` listing the candidates with their numbers."""
    for c in cands:
        if output_is is not None:
            c.reads_as = output_is
        else:
            c.reads_as = "layer" if c.psnr_layer >= c.psnr_clean + LAYER_MARGIN_DB else "image"
    if given is not None:
        text = path_text(given)
        chosen = next((c for c in cands if c.path == text), None)
        if chosen is None:
            raise ConfigError(f"output={text!r} is not an image-shaped output; candidates: "
                              f"{', '.join(c.path for c in cands) or 'none'} of {structure}")
        return chosen, f"given (--output {text}): {chosen.score:.2f} dB on the probe batch, input itself " \
                       f"{identity:.2f} dB"
    layer_note = (f" — it is far from the input and close to input − clean ({cands[0].psnr_layer:.2f} dB as "
                  f"layer vs {cands[0].psnr_clean:.2f} dB as image): the network predicts the degradation, "
                  "restored = input − output") if output_is is None else ""
    if len(cands) == 1:
        c = cands[0]
        return c, ("the only image-shaped output" + (layer_note if c.reads_as == "layer" else "")
                   + f"; {c.score:.2f} dB on the probe batch, input itself {identity:.2f} dB")
    ranked = sorted(cands, key=lambda c: -c.score)
    best, second = ranked[0], ranked[1]
    twins = (same or {}).get((best.path, second.path), (same or {}).get((second.path, best.path), 0.0))
    if best.score - second.score >= DECIDE_MARGIN_DB:
        why = f"the best restoration of the probe batch ({best.score:.2f} dB"
        why += ", read as the layer: restored = input − output" if best.reads_as == "layer" else ""
        why += f"; next {second.path}: {second.score:.2f} dB; input itself {identity:.2f} dB)"
        return best, why + f" among {len(cands)} image-shaped outputs"
    if twins >= SAME_DB:
        first = next(c for c in cands if c.path in (best.path, second.path))
        return first, (f"the first of {len(cands)} image-shaped outputs; {best.path} and {second.path} are the "
                       f"same image ({twins:.1f} dB apart) and the best ({best.score:.2f} dB; input itself "
                       f"{identity:.2f} dB)")
    raise ConfigError(f"the forward returns {len(cands)} image-shaped outputs that the probe batch does not tell "
                      f"apart: {_table(cands, identity)}; pass --output PATH (e.g. --output {cands[-1].path}) "
                      "or output = ... in the model card")


# -------------------------------------------------------------------------------------------- the check


def _forward(model: Any, x: Tensor, seed: int | None) -> Any:
    return model._probe_call(model._probe_prepare(x), seed, wrap=False)


def _max_difference(a: Any, b: Any) -> float:
    ta, tb = tensors(a), tensors(b)
    if [p for p, _ in ta] != [p for p, _ in tb]:
        return float("inf")
    diffs = [float((u.float() - v.float()).abs().max()) if u.shape == v.shape else float("inf")
             for (_, u), (_, v) in zip(ta, tb) if u.is_floating_point()]
    return max(diffs, default=0.0)


def _accepted_size(model: Any, pad_multiple: int, device: torch.device) -> tuple[int, Tensor, Tensor, Any,
                                                                                 bool]:
    errors = []
    sizes = list(dict.fromkeys(s + (-s) % pad_multiple for s in SIZES))
    for size in sizes:
        degraded, clean = (t.to(device) for t in probe_batch(2, size))
        given = model._probe_prepare(degraded)
        before = given.clone()
        try:
            with torch.no_grad():
                raw = model._probe_call(given, None, wrap=False)
        except ProbeError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code: try the next size
            if is_out_of_memory(exc):
                errors.append(f"{size} px: out of memory")
            else:
                errors.append(f"{size} px: {type(exc).__name__}: {one_line(exc)[:120]}")
            continue
        return size, degraded, clean, raw, not torch.equal(given, before)
    memory = all("out of memory" in e for e in errors)
    cls = OutOfMemory if memory else DataError
    raise cls(f"{type(model).__name__}: the forward fails at every probe size tried ({'; '.join(errors[:3])}"
              f"{'; …' if len(errors) > 3 else ''})" + ("; it ran out of memory even at 16 px" if memory else
                                                         "; pass --pad-multiple N if it needs a multiple"))


def check_network(model: Any) -> OutputChoice:
    """Run the checks of the module docstring on an adapted external network (no gradients, eval mode kept).

    Raises :class:`ConfigError` (outputs that cannot be told apart, a bad ``output``), :class:`DataError` (no
    probe size runs, no image-shaped output) or :class:`OutOfMemory`, each one line.
    """
    conv = model._probe_conv
    param = next((p for p in model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    size, degraded, clean, raw, inplace = _accepted_size(model, conv.pad_multiple, device)
    with torch.no_grad():
        again = _forward(model, degraded.clone(), None)
    difference = _max_difference(raw, again)
    deterministic, seeded, warnings = difference <= DETERMINISM_TOL, False, []
    if not deterministic:
        with torch.no_grad():
            raw = _forward(model, degraded.clone(), SEED)
            seeded = _max_difference(raw, _forward(model, degraded.clone(), SEED)) <= DETERMINISM_TOL
        if not seeded:
            warnings.append("the forward differs from run to run even under a fixed seed (e.g. non-deterministic "
                            "GPU kernels or an unseeded generator): stored numbers will not repeat exactly")
    n, h, w = degraded.shape[0], degraded.shape[-2], degraded.shape[-1]
    structure = describe(raw)
    found = image_candidates(raw, n, h, w)
    if not found:
        raise DataError(f"{type(model).__name__}: the forward returned {structure}: no image-shaped element "
                        f"({n}, 3, ≥{h}, ≥{w}); pass --output with the path of the restored image")
    scale = conv.input_range
    cands, images = [], {}
    for path, t in found:
        c = (t[..., :h, :w].float() / scale).detach()
        text = path_text(path)
        images[text] = c
        cands.append(Candidate(text, list(t.shape), psnr(c, clean), psnr(degraded - c, clean), psnr(c, degraded)))
    same = {(a.path, b.path): psnr(images[a.path], images[b.path]) for i, a in enumerate(cands)
            for b in cands[i + 1:]} if len(cands) <= 12 else {}
    identity = psnr(degraded, clean)
    given = parse_selector(conv.output)
    if given is not None:  # a wrong path: one line with the structure; a negative index → its own path
        picked = pick(raw, given)
        given = next((p for p, t in found if t is picked), given)
    chosen, reason = decide(cands, identity, given, conv.output_is, same, structure)
    if chosen.score < identity - IDENTITY_SLACK_DB:
        warnings.append(f"even the chosen output restores the probe batch worse than doing nothing "
                        f"({chosen.score:.2f} dB vs {identity:.2f} dB for the input itself): random or mismatched "
                        "weights, a wrong --input-range, or a network that does not remove streaks"
                        + ("; if it predicts the degradation pass --output-is layer"
                           if conv.output_is is None and chosen.reads_as == "image" else ""))
    path = None if isinstance(raw, Tensor) else chosen.path
    return OutputChoice(path=path, output_is=chosen.reads_as, reason=reason, structure=structure,
                        candidates=cands, identity_psnr=identity, size=size, deterministic=deterministic,
                        max_difference=difference if math.isfinite(difference) else -1.0, seeded=seeded,
                        inplace=inplace, warnings=warnings)


def choice_info(model: Any) -> dict[str, str]:
    """The model-info entries a store keeps of the check (empty for a network the check has not run on):
    ``output`` (the first line of the summary: which output and why), ``output_choice`` (JSON of
    :meth:`OutputChoice.to_dict`) and ``deterministic`` / ``inplace`` ("true"/"false")."""
    import json

    choice = getattr(model, "output_choice", None)
    if choice is None:
        return {}
    return {"output": choice.summary().splitlines()[0], "output_choice": json.dumps(choice.to_dict()),
            "deterministic": str(choice.deterministic).lower(), "inplace": str(choice.inplace).lower()}
