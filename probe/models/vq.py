"""A small VQ autoencoder — the content prior of paper B's remedy 2 — and its checkpoint format.

Paper B (Hu et al. 2025) constrains a restoration network's output onto the clean-image manifold with the
prior of a pre-trained generative model (a fine-tuned VQGAN whose decoder is kept frozen). This module is a
VQ-VAE (van den Oord et al. 2017) / VQGAN-style (Esser et al. 2021) autoencoder small enough to train on a
CPU: encoder (convs, ``down`` stride-2 stages) → vector quantizer (a codebook of ``codes`` vectors of
``latent`` dims; nearest code, straight-through gradient, codebook + commitment loss) → decoder (mirror,
sigmoid output in (0, 1))::

    import torch
    from probe.models.vq import VQAutoencoder
    vq = VQAutoencoder("tiny")
    recon, vq_loss, codes = vq(torch.rand(2, 3, 16, 16))     # (2, 3, 16, 16), scalar, (2, 8, 8) int64

Loss (VQ-VAE eq. 3): ``||sg[z_e] - e||² + beta ||z_e - sg[e]||²`` (beta = 0.25), plus the caller's
reconstruction term. Perceptual and adversarial terms (VQGAN) are not used at this scale.

A prior checkpoint is a folder: ``prior.safetensors`` (weights; probe metadata with family ``vq_prior``,
size, kwargs and a tensor digest, see :func:`probe.models.checkpoint.save_weights`) and ``prior.json`` (the
sidecar: spec, training recipe, metrics, provenance and the SHA-256 of the weights file). Nothing is
unpickled. :func:`load_prior` checks both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.errors import CheckpointError, ConfigError
from probe.models.base import HookPoint
from probe.models.layers import check_options, crop, pad_to_multiple, positive_float, positive_int

PRIOR_FAMILY = "vq_prior"
PRIOR_WEIGHTS = "prior.safetensors"
PRIOR_SIDECAR = "prior.json"


class _Res(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Image (N, 3, H, W) in [0, 1] → latents (N, latent, H / 2**down, W / 2**down) (H, W multiples)."""

    def __init__(self, channels: int, latent: int, down: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1)]
        for _ in range(down):
            layers += [_Res(channels), nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.SiLU()]
        layers += [_Res(channels), nn.Conv2d(channels, latent, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


class Decoder(nn.Module):
    """Latents → image in (0, 1). ``inject`` (optional): one (N, channels, h_i, w_i) tensor per stage
    (the input stage then each up-sampling stage), added to that stage's features (zero = pure decoding)."""

    def __init__(self, channels: int, latent: int, down: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(latent, channels, 3, padding=1), _Res(channels))
        self.ups = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                                               _Res(channels)) for _ in range(down))
        self.hooks = nn.ModuleList(HookPoint() for _ in range(down + 1))
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: Tensor, inject: list[Tensor] | None = None) -> Tensor:
        h = self.stem(z)
        for i in range(len(self.ups) + 1):
            if inject is not None:
                h = h + inject[i]
            h = self.hooks[i](h)
            if i < len(self.ups):
                h = self.ups[i](h)
        return torch.sigmoid(self.out(h))


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient (VQ-VAE). ``codebook``: (codes, latent)."""

    def __init__(self, codes: int, latent: int, beta: float = 0.25):
        super().__init__()
        self.codebook = nn.Parameter(torch.empty(codes, latent).uniform_(-1.0 / codes, 1.0 / codes))
        self.beta = float(beta)

    def indices(self, z: Tensor) -> Tensor:
        """Index of the nearest code of every latent vector: (N, D, h, w) → (N, h, w) int64."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        book = self.codebook
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None]
        return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, idx: Tensor) -> Tensor:
        """Codes of (N, h, w) indices as latents (N, D, h, w)."""
        return self.codebook[idx].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(quantized latents with a straight-through gradient, codebook + beta·commitment loss, indices)."""
        idx = self.indices(z)
        q = self.lookup(idx)
        loss = F.mse_loss(q, z.detach()) + self.beta * F.mse_loss(z, q.detach())
        return z + (q - z).detach(), loss, idx


class VQAutoencoder(nn.Module):
    """The content prior: ``encode`` → ``quantize`` → ``decode`` (see the module docstring).

    Options (size presets set all; keyword arguments override): ``channels`` (feature width), ``latent``
    (code dimension), ``codes`` (codebook size), ``down`` (stride-2 stages; latents are 2**down smaller),
    ``beta`` (commitment weight). Presets: tiny 16 ch / 8-d / 128 codes / ×2 (held-out natural crops at 48 px:
    26.7 dB after 600 steps, 29.5 after 2400, 29.6 after 6000 — the codebook caps it), fine = tiny with 512
    codes (30.9 dB after 2400 steps, 6 CPU-min; the remedies study's long rung), small 32 / 16 / 256 / ×4,
    paper 64 / 64 / 1024 / ×8. (Measured 2026-12-03, seed 0, lr 2e-3, batch 16, 16 test crops.)
    """

    family: ClassVar[str] = PRIOR_FAMILY
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": 16, "latent": 8, "codes": 128, "down": 1, "beta": 0.25},
        "fine": {"channels": 16, "latent": 8, "codes": 512, "down": 1, "beta": 0.25},
        "small": {"channels": 32, "latent": 16, "codes": 256, "down": 2, "beta": 0.25},
        "paper": {"channels": 64, "latent": 64, "codes": 1024, "down": 3, "beta": 0.25},
    }

    def __init__(self, size: str = "tiny", **kwargs: Any):
        super().__init__()
        if size not in self.sizes:
            raise ConfigError(f"{PRIOR_FAMILY}: unknown size {size!r}; allowed: {', '.join(self.sizes)}")
        hp = {**self.sizes[size], **kwargs}
        check_options(PRIOR_FAMILY, hp, self.sizes["tiny"])
        self.size, self.kwargs = size, dict(kwargs)
        channels = positive_int(PRIOR_FAMILY, "channels", hp["channels"])
        latent = positive_int(PRIOR_FAMILY, "latent", hp["latent"])
        codes = positive_int(PRIOR_FAMILY, "codes", hp["codes"])
        self.down = positive_int(PRIOR_FAMILY, "down", hp["down"])
        beta = positive_float(PRIOR_FAMILY, "beta", hp["beta"])
        self.channels, self.latent = channels, latent
        self.encoder = Encoder(channels, latent, self.down)
        self.quantizer = VectorQuantizer(codes, latent, beta)
        self.decoder = Decoder(channels, latent, self.down)

    @property
    def spec(self) -> dict[str, Any]:
        return {"family": PRIOR_FAMILY, "size": self.size, "kwargs": dict(self.kwargs)}

    @property
    def multiple(self) -> int:
        return 2 ** self.down

    def encode(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) → continuous latents; H, W are padded to a multiple of ``2**down``."""
        return self.encoder(pad_to_multiple(x, self.multiple))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction in (0, 1) of x's shape, VQ loss, code indices)."""
        h, w = x.shape[-2:]
        q, loss, idx = self.quantizer(self.encode(x))
        return crop(self.decoder(q), h, w), loss, idx


def prior_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) of a prior given as its folder or its ``prior.safetensors``."""
    path = Path(path)
    weights = path / PRIOR_WEIGHTS if path.is_dir() or path.suffix != ".safetensors" else path
    return weights, weights.with_name(PRIOR_SIDECAR)


def load_prior(path: str | Path) -> tuple[VQAutoencoder, dict[str, Any]]:
    """Load a prior checkpoint (folder or ``prior.safetensors``) → (model in eval mode, sidecar dict).

    Checks the tensor digest in the file and, when the sidecar exists, the file's SHA-256 against it.
    Raises :class:`~probe.errors.CheckpointError` naming the file for anything missing or inconsistent.
    """
    from probe.models.checkpoint import read_probe_safetensors
    from probe.provenance import sha256_file

    weights, sidecar = prior_files(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no prior checkpoint (train one with `probe prior train --out "
                              f"{weights.parent}`)")
    info: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            info = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{sidecar}: unreadable prior sidecar ({exc})") from exc
        expected = info.get("weights_sha256")
        if expected and sha256_file(weights) != expected:
            raise CheckpointError(f"{weights}: sha256 differs from {sidecar} (corrupt or replaced)")
    state, spec = read_probe_safetensors(weights)
    if spec is None or spec["family"] != PRIOR_FAMILY:
        raise CheckpointError(f"{weights}: not a {PRIOR_FAMILY} checkpoint (family "
                              f"{None if spec is None else spec['family']!r})")
    try:
        model = VQAutoencoder(spec["size"] or "tiny", **spec["kwargs"])
        model.load_state_dict(state)
    except (ConfigError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: does not fit {PRIOR_FAMILY}/{spec['size']}: {exc}") from exc
    return model.eval(), {**info, "spec": spec}
