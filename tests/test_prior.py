"""Remedy 2 (content prior): VQ prior training and checkpoints, the prior_restorer family, the adapter."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from probe.cli import main
from probe.errors import CheckpointError, ConfigError
from probe.models import build
from probe.models.checkpoint import load_model
from probe.models.layers import pad_to_multiple
from probe.models.prior_restorer import AutoencoderPrior, trainable_parameters
from probe.models.vq import VQAutoencoder, load_prior
from probe.train.prior import train_prior


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "natural"
    train_prior("natural", out, n_images=8, patch=16, iterations=6, batch=4, seed=0, device="cpu")
    return out


def test_vq_quantizer_straight_through_and_losses():
    vq = VQAutoencoder("tiny")
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    q, loss, idx = vq.quantizer(z)
    book = vq.quantizer.codebook.detach()
    nearest = torch.cdist(z.detach().permute(0, 2, 3, 1).reshape(-1, 8), book).argmin(1)
    assert torch.equal(idx.flatten(), nearest)  # nearest code (brute force reference)
    torch.testing.assert_close(q.detach(), book[idx].permute(0, 3, 1, 2))
    q.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight-through: identity gradient
    expected = (1 + 0.25) * ((book[idx].permute(0, 3, 1, 2) - z.detach()) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_prior_trains_on_16px_clean_images_and_round_trips(prior_dir):
    info = json.loads((prior_dir / "prior.json").read_text())
    assert info["recipe"]["background"] == "natural" and info["recipe"]["patch"] == 16
    assert 0 < info["metrics"]["codebook_usage"] <= 1 and info["metrics"]["psnr_test"] > 5
    model, loaded = load_prior(prior_dir)
    assert loaded["weights_sha256"] == info["weights_sha256"]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[0], load_prior(prior_dir / "prior.safetensors")[0](x)[0])
    # same recipe: the stored prior is returned, not retrained; another recipe is refused
    assert train_prior("natural", prior_dir, n_images=8, patch=16, iterations=6, batch=4, device="cpu") == info
    with pytest.raises(ConfigError, match="another recipe"):
        train_prior("natural", prior_dir, n_images=8, patch=16, iterations=7, batch=4, device="cpu")


def test_prior_training_learns(tmp_path):
    short = train_prior("smooth", tmp_path / "a", n_images=8, patch=16, iterations=2, batch=8, device="cpu")
    longer = train_prior("smooth", tmp_path / "b", n_images=8, patch=16, iterations=150, batch=8, device="cpu")
    assert longer["metrics"]["psnr_test"] > short["metrics"]["psnr_test"] + 2


def test_corrupt_or_foreign_prior_is_refused(prior_dir, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(prior_dir, copy)
    data = bytearray((copy / "prior.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (copy / "prior.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_prior(copy)
    with pytest.raises(CheckpointError, match="no prior checkpoint"):
        load_prior(tmp_path / "missing")
    with pytest.raises(ConfigError, match="size"):
        train_prior("natural", tmp_path / "x", size="huge")


def test_restorer_output_lies_in_the_decoders_range(prior_dir):
    model = build("prior_restorer", "tiny", prior=str(prior_dir)).eval()
    prior, _ = load_prior(prior_dir)
    x = torch.rand(2, 3, 20, 17)
    with torch.no_grad():
        y = model(x)
        z = model.encoder(pad_to_multiple(x, model.multiple))
        codes = prior.quantizer.indices(z)
        expected = prior.decoder(prior.quantizer.lookup(codes))[..., :20, :17]
    assert y.shape == x.shape and float(y.min()) > 0 and float(y.max()) < 1
    torch.testing.assert_close(y, expected)  # decoder(codebook[k]) for some codes k
    assert model.frozen and trainable_parameters(model) == sum(p.numel() for p in model.encoder.parameters())


@pytest.mark.parametrize("fuse", [False, True])
def test_frozen_decoder_does_not_change_in_training(prior_dir, tiny_config, tmp_path, fuse):
    from probe.train.trainer import train

    tiny_config["model"] = {"family": "prior_restorer", "size": "tiny", "prior": str(prior_dir), "fuse": fuse}
    tiny_config["data"]["patch"] = 16
    before = build("prior_restorer", "tiny", prior=str(prior_dir), fuse=fuse).state_dict()
    record = train(tiny_config, tmp_path / "run")
    assert record["status"] == "done"
    after = load_model(tmp_path / "run").state_dict()
    frozen = [k for k in before if k.startswith(("decoder.", "quantizer."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))


def test_run_checkpoint_is_self_contained_and_missing_prior_is_one_line(prior_dir, tiny_config, tmp_path):
    from probe.train.trainer import train

    own = tmp_path / "prior"
    shutil.copytree(prior_dir, own)
    tiny_config["model"] = {"family": "prior_restorer", "size": "tiny", "prior": str(own)}
    tiny_config["data"]["patch"] = 16
    train(tiny_config, tmp_path / "run")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        reference = load_model(tmp_path / "run")(x)
    shutil.rmtree(own)  # the run's weights hold the frozen prior: loading needs no prior folder
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "run")(x), reference)
    with pytest.raises(ConfigError, match="not found; train it first") as info:
        train(tiny_config, tmp_path / "run2")
    assert "\n" not in str(info.value)


class _ToyAutoencoder(nn.Module):
    """A user's autoencoder: encode returns a tuple (as taming's VQGAN), ×2 down-sampling."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 4, 2, stride=2)
        self.dec = nn.ConvTranspose2d(4, 3, 2, stride=2)

    def encode(self, x):
        return self.enc(x), None

    def decode(self, z):
        return torch.sigmoid(self.dec(z))


def test_adapter_wraps_any_encode_decode_module():
    torch.manual_seed(0)
    toy = _ToyAutoencoder()
    model = build("prior_restorer", "tiny", prior=AutoencoderPrior(toy, multiple=2))
    assert model.frozen and all(not p.requires_grad for p in model.decoder.parameters())
    x = torch.rand(2, 3, 9, 10)
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = (model(x) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x).shape == x.shape
    assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in decoder_before.items())
    with pytest.raises(ConfigError, match="encode/decode"):
        AutoencoderPrior(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="fuse"):
        build("prior_restorer", "tiny", prior=toy, fuse=True)


def test_prior_cli_trains_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "cli_prior"
    args = ["prior", "train", "--background", "smooth", "--out", str(out), "--n-images", "4", "--patch", "16",
            "--iterations", "3", "--batch", "2", "--device", "cpu"]
    assert main(args) == 0
    assert (out / "prior.safetensors").is_file() and (out / "prior.json").is_file()
    assert main(["prior", "train", "--background", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1


def test_batched_executor_keeps_the_prior_frozen(prior_dir, tiny_config, tmp_path):
    from probe.grid.batched import train_group
    from probe.train.config import TrainConfig

    tiny_config["model"] = {"family": "prior_restorer", "size": "tiny", "prior": str(prior_dir)}
    tiny_config["data"]["patch"] = 16
    cells = []
    for seed in (0, 1):
        config = TrainConfig.from_dict({**tiny_config, "seed": seed, "name": f"s{seed}"}).to_dict()
        cells.append((f"s{seed}", config, tmp_path / f"s{seed}"))
    outcomes = train_group(cells, "cpu")
    assert [o["status"] for o in outcomes] == ["done", "done"]
    prior, _ = load_prior(prior_dir)
    for _, _, path in cells:
        model = load_model(path)
        assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in prior.decoder.state_dict().items())
        assert not torch.equal(prior.encoder.net[0].weight, model.encoder.net[0].weight)


def test_the_fine_prior_has_more_codes_and_a_restorer_runs_on_it(tmp_path):
    """The `fine` preset (the remedies long rung's prior): tiny's shape with 4x the codes; a restorer built on
    it takes its size, and one built with another size is refused in one line."""
    out = tmp_path / "fine"
    info = train_prior("natural", out, n_images=4, patch=16, iterations=3, batch=2, size="fine", device="cpu")
    assert info["spec"]["size"] == "fine"
    vq, _ = load_prior(out)
    assert vq.quantizer.codebook.shape == (512, 8) and vq.multiple == VQAutoencoder("tiny").multiple
    net = build("prior_restorer", "fine", prior=str(out))
    x = torch.rand(1, 3, 16, 16)
    assert net(x).shape == x.shape
    with pytest.raises(ConfigError, match="set model.size to the prior's size"):
        build("prior_restorer", "tiny", prior=str(out))


def _restorer_objective(net, x, y):
    """The objective the commitment option stands for, written out: L1(output) + β·mean((z − sg[q])²)."""
    z = net.encoder(pad_to_multiple(x, net.multiple))
    q = net.quantizer.lookup(net.quantizer.indices(z)).detach()
    out = net.decoder(q + (z - z.detach()))[..., : x.shape[-2], : x.shape[-1]]
    return nn.functional.l1_loss(out, y) + net.commitment * nn.functional.mse_loss(z, q)


@pytest.mark.parametrize("beta", [None, 0.0, 1.5])
def test_the_encoder_is_pulled_toward_its_codes_as_by_the_commitment_term(prior_dir, beta):
    """The gradient the restorer's encoder gets from the plain task loss equals that of the written-out
    objective (task loss + commitment term): the term rides in the straight-through step, no trainer adds it.
    Default β is the prior's own (0.25); 0 is the bare straight-through estimator."""
    torch.manual_seed(0)
    options = {} if beta is None else {"commitment": beta}
    net = build("prior_restorer", prior=str(prior_dir), **options)
    assert net.commitment == (0.25 if beta is None else beta)
    x, y = torch.rand(2, 3, 10, 12), torch.rand(2, 3, 10, 12)
    nn.functional.l1_loss(net(x), y).backward()
    ours = {k: p.grad.clone() for k, p in net.encoder.named_parameters()}
    net.zero_grad()
    _restorer_objective(net, x, y).backward()
    reference = {k: p.grad for k, p in net.encoder.named_parameters()}
    for k in ours:
        torch.testing.assert_close(ours[k], reference[k])
    if beta != 0.0:  # the pull changes the gradient: a test that would pass without it is no test
        net.zero_grad()
        net.commitment = 0.0
        nn.functional.l1_loss(net(x), y).backward()
        assert any(not torch.allclose(ours[k], p.grad) for k, p in net.encoder.named_parameters())


def test_the_commitment_pull_is_per_cell_under_vmap(prior_dir):
    """The batched executor vmaps the step over cells: each cell's gradient is the one it gets alone."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.manual_seed(1)
    nets = [build("prior_restorer", prior=str(prior_dir)) for _ in range(2)]
    with torch.no_grad():
        for p in nets[1].encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, y = torch.rand(2, 2, 3, 8, 8), torch.rand(2, 2, 3, 8, 8)
    params, buffers = stack_module_state(nets)
    base = nets[0]

    def loss(p, b, xi, yi):
        return nn.functional.l1_loss(functional_call(base, (p, b), (xi,)), yi)

    batched = vmap(grad(loss))(params, buffers, x, y)
    for i, net in enumerate(nets):
        net.zero_grad()
        nn.functional.l1_loss(net(x[i]), y[i]).backward()
        for k, p in net.named_parameters():
            if p.requires_grad:
                torch.testing.assert_close(batched[k][i], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, "0.25", True, float("nan")])
def test_a_bad_commitment_weight_is_one_line(prior_dir, bad):
    with pytest.raises(ConfigError, match="commitment"):
        build("prior_restorer", prior=str(prior_dir), commitment=bad)
