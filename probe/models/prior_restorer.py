"""``prior_restorer``: restoration through a frozen generative content prior (paper B's remedy 2).

Paper B (Hu et al. 2025) keeps the decoder of a pre-trained VQGAN frozen and trains a network that maps
the degraded image into its latent space, so that every output is *decoded from the clean-image prior* —
the network cannot reproduce a rain streak the prior cannot draw, whatever it learned. This family does
that with a prior from ``probe prior train`` (:mod:`probe.models.vq`) or with any autoencoder of yours::

    [model]
    family = "prior_restorer"
    size = "tiny"                          # the prior's size preset (must match the checkpoint)
    prior = "trained_models/priors/natural"  # a `probe prior train` output folder
    fuse = false                           # true: add features of the degraded input to the decoder (B)

    model = build("prior_restorer", prior="trained_models/priors/natural")
    model = build("prior_restorer", prior_factory="my_pkg.vqgan:load")   # your module with encode/decode

Trainable: an encoder (initialised from the prior's encoder) that maps the *degraded* image to latents,
then the prior's frozen codebook (nearest code, straight-through gradient; ``quantize = false`` skips it)
and the frozen decoder. The straight-through gradient alone lets the encoder's latents drift away from every
code until one code is nearest to all of them and the output is one constant image (seen at 6000 steps,
lr 1e-3: the loss rose from 0.03 to 0.35 after step 420). So the encoder is also pulled toward its codes by
the VQ-VAE commitment term ``commitment · mean((z − sg[q])²)`` (van den Oord et al. 2017, Eq. 3; default
the prior's own β, 0.25 for probe's priors; ``commitment = 0`` turns it off). It is added to the encoder's
gradient inside the straight-through step (:class:`_StraightThrough`), so every trainer — the local loop and
the batched, ``vmap``-ped one — trains the same objective ``L(output) + commitment · mean((z − sg[q])²)``
without knowing of it; the reported training loss is ``L(output)`` alone.

With ``fuse = true`` a small trainable branch reads the degraded image and adds its features to every
decoder stage through zero-initialised convolutions (training starts from pure decoding); the decoder's
weights still never change. Without fusion every output is ``decoder(codebook[k])`` for some
codes ``k``: it lies in the decoder's range.

The frozen prior is part of the state dict, so a trained run's ``model.safetensors`` is self-contained:
:func:`probe.load_model` works even where the prior folder is gone. A model built from a missing prior
(e.g. while a study spec is validated before its prior is trained) refuses to run until weights are
loaded, with a one-line :class:`~probe.errors.ConfigError` naming the path.

Without a prior (``prior`` unset) nothing is frozen: the same architecture trained end to end from scratch
(the no-prior ablation). ``global_residual`` is not an option: the decoder draws the image itself.

Probe points: ``hook_latent`` (encoder output), ``hook_quantized``, ``decoder.hooks.{i}`` (decoder stages),
``hook_layer`` (the decoded image), ``hook_output`` (the same, the model's output).
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probe.errors import ConfigError
from probe.models.base import HookPoint, RestorationModel
from probe.models.layers import boolean, check_input, check_options, crop, pad_to_multiple
from probe.models.vq import VQAutoencoder, load_prior, prior_files

_DEFAULTS = {"prior": None, "prior_factory": None, "fuse": False, "quantize": None, "commitment": None}


class AutoencoderPrior(nn.Module):
    """Adapter for a user's pre-trained autoencoder: any module with ``encode(x)`` and ``decode(z)``.

    ``encode`` may return a tuple (its first element is the latent, as in taming-transformers' VQGAN);
    images are (N, 3, H, W) in [0, 1] unless ``signed = True`` (the module expects and returns [-1, 1]).
    ``multiple`` is the spatial down-sampling factor (inputs are padded to it). The module is frozen.
    """

    def __init__(self, module: nn.Module, multiple: int = 8, signed: bool = False):
        super().__init__()
        if not (callable(getattr(module, "encode", None)) and callable(getattr(module, "decode", None))):
            raise ConfigError(f"prior: {type(module).__name__} has no encode/decode methods")
        self.module, self.multiple, self.signed = module, int(multiple), bool(signed)
        for p in self.module.parameters():
            p.requires_grad_(False)

    def encode(self, x: Tensor) -> Tensor:
        z = self.module.encode(x * 2 - 1 if self.signed else x)
        return z[0] if isinstance(z, (tuple, list)) else z

    def decode(self, z: Tensor) -> Tensor:
        y = self.module.decode(z)
        return (y + 1) / 2 if self.signed else y


def _factory(spec: str) -> nn.Module:
    module_name, _, attr = str(spec).partition(":")
    if not module_name or not attr:
        raise ConfigError(f"prior_restorer: prior_factory = {spec!r} must be 'package.module:callable'")
    try:
        made = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"prior_restorer: prior_factory {spec!r} cannot be imported: {exc}") from exc
    return made if isinstance(made, AutoencoderPrior) else AutoencoderPrior(made)


class PriorRestorer(RestorationModel):
    """Degraded image → (trainable encoder) → frozen codebook → frozen decoder (see the module docstring).

    Options: ``prior`` (path of a prior folder / ``prior.safetensors``; ``None`` only for shape-only
    builds), ``prior_factory`` (``"module:callable"`` returning your autoencoder; instead of ``prior``),
    ``fuse`` (bool), ``quantize`` (bool; default: when a prior is loaded — a random codebook is no prior),
    ``commitment`` (float ≥ 0, the weight of the encoder's pull toward its codes; default the prior's β).
    The size preset is the prior's (tiny, small, fine, paper).
    """

    family: ClassVar[str] = "prior_restorer"
    sizes: ClassVar[dict[str, dict[str, Any]]] = {name: dict(_DEFAULTS) for name in VQAutoencoder.sizes}

    def __init__(self, size: str = "tiny", prior: Any = None, **kwargs: Any):
        external = prior if isinstance(prior, nn.Module) else None
        if prior is not None and external is None:
            kwargs["prior"] = prior
        super().__init__(size, **kwargs)
        hp = self.hparams
        check_options(self.family, hp, _DEFAULTS)
        self.fuse = boolean(self.family, "fuse", hp["fuse"])
        quantize = hp["quantize"]
        self.quantize = None if quantize is None else boolean(self.family, "quantize", quantize)
        commitment = hp["commitment"]
        if commitment is not None and (isinstance(commitment, bool) or not isinstance(commitment, (int, float))
                                       or not 0 <= commitment < float("inf")):
            raise ConfigError(f"prior_restorer: commitment = {commitment!r} must be a number >= 0")
        if hp["prior"] is not None and not isinstance(hp["prior"], str):
            raise ConfigError(f"prior_restorer: prior = {hp['prior']!r} must be a path (string)")
        self.prior_path = hp["prior"]
        if hp["prior_factory"] is not None:
            external = _factory(hp["prior_factory"])
        elif isinstance(external, nn.Module) and not isinstance(external, (AutoencoderPrior, VQAutoencoder)):
            external = AutoencoderPrior(external)
        self._ready = True
        if external is not None and not isinstance(external, VQAutoencoder):
            if self.fuse:
                raise ConfigError("prior_restorer: fuse = true needs a probe VQ prior (decoder stages)")
            self.encoder = _ExternalEncoder(copy.deepcopy(external.module), external)
            self.hook_latent, self.hook_quantized = HookPoint(), HookPoint()
            self.quantizer, self.fusion = None, None
            self.decoder = external
            self.multiple = external.multiple
            self.frozen = True
        else:
            vq = external if isinstance(external, VQAutoencoder) else self._load(size)
            # a declared prior is frozen and quantized whether or not its folder exists here (a run checkpoint
            # rebuilt elsewhere must behave the same)
            self.frozen = isinstance(external, VQAutoencoder) or self.prior_path is not None
            self.encoder = copy.deepcopy(vq.encoder)  # trainable, starts as the prior's encoder
            self.hook_latent, self.hook_quantized = HookPoint(), HookPoint()
            self.quantizer, self.decoder = vq.quantizer, vq.decoder
            self.multiple = vq.multiple
            if self.frozen:
                for p in list(self.quantizer.parameters()) + list(self.decoder.parameters()):
                    p.requires_grad_(False)
            self.fusion = _Fusion(vq.channels, vq.down) if self.fuse else None
        default_beta = self.quantizer.beta if self.quantizer is not None else 0.0
        self.commitment = float(default_beta if commitment is None else commitment)
        self.hook_layer = HookPoint()
        self.hook_output = HookPoint()
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_ready", True))

    def _load(self, size: str) -> VQAutoencoder:
        path = self.prior_path
        if path is not None and prior_files(path)[0].is_file() and not _on_meta():
            vq, info = load_prior(path)
            spec = info["spec"]
            if spec["size"] != size or spec["kwargs"]:
                raise ConfigError(f"prior_restorer: prior {path} is {spec['size']} {spec['kwargs'] or ''} but "
                                  f"model.size = {size!r}; set model.size to the prior's size")
            return vq
        # no prior: the no-prior ablation, trained end to end; a missing prior: shape-only until weights load
        self._ready = path is None
        return VQAutoencoder(size)

    def train(self, mode: bool = True) -> PriorRestorer:
        super().train(mode)
        if self.frozen:
            self.decoder.eval()  # the frozen prior never switches to training behaviour
        return self

    def forward(self, x: Tensor) -> Tensor:
        check_input(self.family, x)
        if not self._ready:
            raise ConfigError(f"prior_restorer: prior {self.prior_path!r} not found; train it first "
                              f"(`probe prior train --out {self.prior_path}`)")
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.multiple)
        z = self.hook_latent(self.encoder(xp))
        quantize = self.frozen if self.quantize is None else self.quantize
        if self.quantizer is not None and quantize:
            q = self.quantizer.lookup(self.quantizer.indices(z))
            # value: the code; gradient: to the encoder (straight-through, plus the commitment pull) and to
            # the codebook (only trainable in the no-prior ablation)
            z = _StraightThrough.apply(z, q, self.commitment)
        z = self.hook_quantized(z)
        if self.quantizer is None:
            out = self.decoder.decode(z)
        else:
            out = self.decoder(z, self.fusion(xp) if self.fusion is not None else None)
        return self.hook_output(self.hook_layer(crop(out, h, w)))


class _StraightThrough(torch.autograd.Function):
    """``q`` forward; backward: the output's gradient to both ``z`` and ``q`` (straight-through), plus, to
    ``z``, the gradient ``2β (z − q) / z.numel()`` of the commitment term ``β · mean((z − sg[q])²)``.

    A term of the objective carried in the gradient, so that no trainer needs to know of it; under
    ``torch.func.vmap`` (the batched executor) each cell sees its own ``z`` and its own mean."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Tensor, q: Tensor, beta: float) -> Tensor:
        return q.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        z, q, beta = inputs
        ctx.save_for_backward(z, q)
        ctx.beta = beta

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, q = ctx.saved_tensors
        pull = (2.0 * ctx.beta / z.numel()) * (z - q) if ctx.beta else 0.0
        return grad + pull, grad, None


class _ExternalEncoder(nn.Module):
    def __init__(self, module: nn.Module, adapter: AutoencoderPrior):
        super().__init__()
        self.module, self.signed = module, adapter.signed
        for p in self.module.parameters():
            p.requires_grad_(True)

    def forward(self, x: Tensor) -> Tensor:
        z = self.module.encode(x * 2 - 1 if self.signed else x)
        return z[0] if isinstance(z, (tuple, list)) else z


class _Fusion(nn.Module):
    """Features of the degraded input at every decoder resolution, through zero-initialised 1×1 convs."""

    def __init__(self, channels: int, down: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.SiLU())
        self.downs = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.SiLU())
                                   for _ in range(down))
        self.gates = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(down + 1))
        for gate in self.gates:
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.stem(x * 2 - 1)]
        for layer in self.downs:
            feats.append(layer(feats[-1]))
        feats = feats[::-1]  # lowest resolution first, as the decoder's stages
        return [gate(f) for gate, f in zip(self.gates, feats)]


def _on_meta() -> bool:
    return torch.empty(()).is_meta


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that receive gradients (the frozen prior excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["AutoencoderPrior", "PriorRestorer", "trainable_parameters"]
