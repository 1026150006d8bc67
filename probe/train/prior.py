"""Train the content prior of paper B's remedy 2 — a VQ autoencoder on clean images only.

::

    from probe.train.prior import train_prior
    info = train_prior("natural", out="trained_models/priors/natural", iterations=400)
    info["metrics"]          # {"psnr_test": 27.1, "codebook_usage": 0.8, "perplexity": 41.0, ...}

or ``probe prior train --background natural --out trained_models/priors/natural``. Any registered
background source works (``folder`` for your own photographs); nothing is downloaded. The images are the
source's "train" split (``n_images`` of them, random ``patch`` crops with flips, as training data); the
reported reconstruction PSNR is on its held-out "test" split. Loss: L1 reconstruction + the VQ-VAE codebook
and commitment terms (:class:`probe.models.vq.VectorQuantizer`). The codebook starts from encoder outputs of
the first batch, and codes unused for ``restart_every`` steps are re-seeded from the current batch's
latents (a standard guard against codebook collapse); every random number comes from the seed.

The output folder holds ``prior.safetensors`` and the ``prior.json`` sidecar (recipe, metrics,
provenance, SHA-256 of the weights). Training again with the same recipe returns the stored prior; another
recipe in the same folder is refused unless ``force``.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from probe.errors import ConfigError
from probe.fsutil import write_json_atomic
from probe.progress import progress

_PRIOR_SALT = 0x5EED_0100


def train_prior(background: str = "natural", out: str | Path = "trained_models/priors/natural", *,
                background_options: dict[str, Any] | None = None, n_images: int = 256, patch: int = 32,
                iterations: int = 400, batch: int = 16, lr: float = 2e-3, size: str = "tiny", seed: int = 0,
                restart_every: int = 50, device: str = "auto", force: bool = False,
                show_progress: bool | None = None) -> dict[str, Any]:
    """Train a VQ prior on clean ``background`` images and write it to ``out``; returns the sidecar dict.

    ``n_images`` distinct train images (>= 1), ``patch`` crop side in px (>= 8, a multiple of the prior's
    down-sampling), ``iterations`` Adam steps with ``batch`` crops at ``lr``, ``size`` a
    :class:`~probe.models.vq.VQAutoencoder` preset. Bad values raise :class:`~probe.errors.ConfigError`.
    """
    from probe.data.backgrounds import BackgroundPool, make_background
    from probe.data.paired import step_generator
    from probe.models.checkpoint import save_weights
    from probe.models.vq import VQAutoencoder, load_prior, prior_files
    from probe.provenance import provenance, sha256_file
    from probe.train.trainer import resolve_device

    recipe = {"background": background, "background_options": dict(background_options or {}),
              "n_images": n_images, "patch": patch, "iterations": iterations, "batch": batch, "lr": lr,
              "size": size, "seed": seed, "restart_every": restart_every}
    _check_recipe(recipe)
    weights, sidecar = prior_files(Path(out))
    weights.parent.mkdir(parents=True, exist_ok=True)
    if sidecar.is_file() and weights.is_file() and not force:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        if info.get("recipe") != json.loads(json.dumps(recipe)):
            raise ConfigError(f"{weights.parent}: holds a prior trained with another recipe; choose another "
                              "--out or pass force")
        load_prior(weights)  # verifies the stored weights
        return info

    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = VQAutoencoder(size).to(dev)
    if patch % model.multiple:
        raise ConfigError(f"prior: patch = {patch} must be a multiple of {model.multiple} for size {size!r}")
    source = make_background(background, patch, seed=seed, **recipe["background_options"])
    pool = BackgroundPool(source.images(n_images, split="train").to(dev), patch)
    test = source.images(16, split="test")
    top = (test.shape[-1] - patch) // 2
    test = test[..., top:top + patch, top:top + patch].to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    usage = torch.zeros(model.quantizer.codebook.shape[0], dtype=torch.long, device=dev)
    t0 = time.perf_counter()
    bar = progress(total=iterations, desc=f"prior {background}", enabled=show_progress)
    model.train()
    try:
        for step in range(iterations):
            g = step_generator(seed, step, salt=_PRIOR_SALT)
            x = pool.sample(batch, g)
            if step == 0:
                _seed_codes(model, x, g, torch.ones_like(usage, dtype=torch.bool))
            recon, vq_loss, idx = model(x)
            loss = F.l1_loss(recon, x) + vq_loss
            if not torch.isfinite(loss):
                raise ConfigError(f"prior: non-finite loss at step {step}; lower lr (now {lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            usage += torch.bincount(idx.flatten(), minlength=usage.numel())
            if restart_every and (step + 1) % restart_every == 0 and step + 1 < iterations:
                _seed_codes(model, x, g, usage == 0)
                usage.zero_()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    finally:
        bar.close()
    metrics = _evaluate(model.eval(), test)
    metrics["wall_time_s"] = time.perf_counter() - t0
    meta = {"recipe": recipe, "metrics": metrics}
    sha = save_weights(model.cpu(), weights, metadata=meta)
    info = {"format": 1, "kind": "vq_prior", "spec": model.spec, "recipe": recipe, "metrics": metrics,
            "weights_sha256": sha, "background": source.describe(), "provenance": provenance()}
    write_json_atomic(sidecar, info)
    assert sha256_file(weights) == sha
    return info


def _seed_codes(model: Any, x: torch.Tensor, g: torch.Generator, which: torch.Tensor) -> None:
    """Set the codes flagged in ``which`` to randomly chosen encoder outputs of batch ``x``."""
    n = int(which.sum())
    if n == 0:
        return
    with torch.no_grad():
        z = model.encode(x)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        pick = torch.randint(flat.shape[0], (n,), generator=g).to(flat.device)
        model.quantizer.codebook.data[which] = flat[pick]


def _evaluate(model: Any, test: torch.Tensor) -> dict[str, float]:
    from probe.metrics import psnr

    with torch.no_grad():
        recon, _, idx = model(test)
    counts = torch.bincount(idx.flatten(), minlength=model.quantizer.codebook.shape[0]).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"psnr_test": float(psnr(recon.clamp(0, 1).cpu(), test.cpu()).mean()),
            "codebook_usage": float((counts > 0).double().mean()), "perplexity": float(entropy.exp())}


def _check_recipe(recipe: dict[str, Any]) -> None:
    from probe.data.backgrounds import BACKGROUNDS
    from probe.models.vq import VQAutoencoder

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if recipe["background"] not in BACKGROUNDS:
        raise ConfigError(f"prior: background = {recipe['background']!r} is not a registered source; allowed: "
                          f"{', '.join(BACKGROUNDS.names())}")
    for key, low in (("n_images", 1), ("patch", 8), ("iterations", 1), ("batch", 1), ("seed", 0),
                     ("restart_every", 0)):
        if not is_int(recipe[key]) or recipe[key] < low:
            raise ConfigError(f"prior: {key} = {recipe[key]!r} must be an integer >= {low}")
    lr = recipe["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"prior: lr = {lr!r} must be a number > 0")
    if recipe["size"] not in VQAutoencoder.sizes:
        raise ConfigError(f"prior: size = {recipe['size']!r}; allowed: {', '.join(VQAutoencoder.sizes)}")


def check_prior_table(table: Any, where: str) -> dict[str, Any]:
    """Validate a ``[priors.NAME]`` table of a study spec (``out`` + :func:`train_prior` keywords)."""
    if not isinstance(table, dict) or "out" not in table:
        raise ConfigError(f"{where} must be a table with an 'out' folder and train_prior options")
    allowed = set(inspect.signature(train_prior).parameters) - {"force", "show_progress"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return dict(table)
