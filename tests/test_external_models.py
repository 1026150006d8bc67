"""Any user network: --arch FILE.py:Class, checkpoint containers and prefixes, conventions, strict loading."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.errors import CheckpointError, ConfigError, DataError
from probe.models import build
from probe.models.checkpoint import load_model, save_weights

ARCHS = Path(__file__).parent / "external_archs"
NETS = f"{ARCHS / 'nets.py'}"
sys.path.insert(0, str(ARCHS))
import nets  # noqa: E402  (the same classes, imported the ordinary way, to make reference checkpoints)

sys.path.remove(str(ARCHS))


def _distinct(net: torch.nn.Module, seed: int = 7) -> dict[str, torch.Tensor]:
    """A state dict no fresh initialisation can equal by accident."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen) * 0.1 + 0.01 if v.is_floating_point() else v)
            for k, v in net.state_dict().items()}


def _same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k].float(), v.float()) for k, v in state.items())


X = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------- architectures

def test_multistage_list_output_gives_the_final_stage_and_keeps_module_names(tmp_path):
    ref = nets.MultiStage(width=8)
    state = _distinct(ref)
    ref.load_state_dict(state)
    torch.save({"params": state}, tmp_path / "net_g_100.pth")
    model = load_model(tmp_path / "net_g_100.pth", arch=f"{NETS}:MultiStage", arch_kwargs='{"width": 8}', output=0)
    assert isinstance(model, nets.MultiStage.__mro__[0]) or type(model).__name__ == "MultiStage"
    assert set(model.state_dict()) == set(state)            # the user's own key names, no wrapper prefix
    with torch.no_grad():
        assert torch.allclose(model(X), ref(X)[0])          # output=0: the final stage
        assert torch.allclose(load_model(tmp_path / "net_g_100.pth", arch=f"{NETS}:MultiStage",
                                         arch_kwargs={"width": 8}, output=-1)(X), ref(X)[-1])
    assert model.probe_points() == ["head", "stages.0", "tails.0", "stages.1", "tails.1"]
    assert model.spec["family"] == "external" and model.spec["kwargs"]["arch_kwargs"] == {"width": 8}


def test_tuple_and_dict_outputs(tmp_path):
    for cls, output, pick in (("TupleLast", None, lambda o: o[1]), ("DictOut", "derained", lambda o: o["derained"])):
        ref = getattr(nets, cls)(width=8)
        torch.save(ref.state_dict(), tmp_path / f"{cls}.pth")
        model = load_model(tmp_path / f"{cls}.pth", arch=f"{NETS}:{cls}", output=output)
        with torch.no_grad():
            assert torch.allclose(model(X), pick(ref(X)))
    with pytest.raises(ConfigError, match=r"output='nosuchkey' does not select.*'rain'.*'derained'"):
        load_model(tmp_path / "DictOut.pth", arch=f"{NETS}:DictOut", output="nosuchkey")  # checked at load


def test_network_needing_multiples_of_8_fails_in_one_line_then_runs_with_padding(tmp_path):
    torch.save(nets.Needs8().state_dict(), tmp_path / "n8.pth")
    model = load_model(tmp_path / "n8.pth", arch=f"{NETS}:Needs8")
    odd = torch.rand(1, 3, 30, 37)
    with pytest.raises(DataError) as info:
        model(odd)
    text = str(info.value)
    assert "30×37" in text and "--pad-multiple" in text and "\n" not in text
    padded = load_model(tmp_path / "n8.pth", arch=f"{NETS}:Needs8", pad_multiple=8)
    out = padded(odd)
    assert out.shape == odd.shape
    big = torch.rand(1, 3, 40, 48)  # already a multiple: padding changes nothing
    assert torch.allclose(padded(big), model(big))


def test_tiling_matches_the_whole_image_for_a_pointwise_network(tmp_path):
    torch.save(nets.Range255().state_dict(), tmp_path / "r.pth")
    whole = load_model(tmp_path / "r.pth", arch=f"{NETS}:Range255", input_range=255)
    tiled = load_model(tmp_path / "r.pth", arch=f"{NETS}:Range255", input_range=255, tile=16, tile_overlap=4)
    image = torch.rand(1, 3, 37, 50)
    assert torch.allclose(tiled(image), whole(image), atol=1e-6)
    assert torch.allclose(whole(image), image, atol=1e-6)  # the 0..255 network returns the [0, 1] image


def test_kwargs_only_constructor(tmp_path):
    ref = nets.KwargsOnly(embed_dim=8, depth=2)
    torch.save({"state_dict": ref.state_dict(), "epoch": 12, "lr": 1e-4}, tmp_path / "k.pth")
    with pytest.raises(ConfigError, match="KwargsOnly.*arch-kwargs"):
        load_model(tmp_path / "k.pth", arch=f"{NETS}:KwargsOnly")
    model = load_model(tmp_path / "k.pth", arch=f"{NETS}:KwargsOnly", arch_kwargs={"embed_dim": 8, "depth": 2})
    assert _same(model, ref.state_dict())
    assert model.probe_points() == ["conv_first", "layers", "conv_last"]


def test_network_that_predicts_the_layer_is_turned_into_a_restoration(tmp_path):
    ref = nets.PredictsLayer()
    torch.save(ref.state_dict(), tmp_path / "l.pth")
    model = load_model(tmp_path / "l.pth", arch=f"{NETS}:PredictsLayer", output_is="layer")
    with torch.no_grad():
        assert torch.allclose(model(X), X - ref(X))


def test_arch_errors_are_one_line(tmp_path):
    torch.save(nets.Needs8().state_dict(), tmp_path / "n8.pth")
    for arch, pattern in ((f"{NETS}:Nope", "no class 'Nope'.*Needs8"), ("nofile.py:Net", "nofile.py: no such file"),
                          ("justtext", "expected FILE.py:Class"), ("no_such_pkg.mod:Net", "cannot import module")):
        with pytest.raises(ConfigError, match=pattern):
            load_model(tmp_path / "n8.pth", arch=arch)
    with pytest.raises(CheckpointError, match=r"n8.pth: weights do not fit .*MultiStage.*missing key"):
        load_model(tmp_path / "n8.pth", arch=f"{NETS}:MultiStage")


# ----------------------------------------------------------------------------------------- containers

@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "net_g.", "model.", "generator."])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_wrapper_prefixes_are_removed_in_pth_and_safetensors(tmp_path, prefix, fmt):
    ref = nets.WithBN()
    state = _distinct(ref)
    prefixed = {prefix + k: v for k, v in state.items()}
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(prefixed, path)
    else:
        from safetensors.torch import save_file

        save_file(prefixed, str(path))
    model = load_model(path, arch=f"{NETS}:WithBN")
    assert _same(model, state)
    assert model.load_report.prefix == prefix and model.load_report.matched == len(state)


def test_lightning_nesting_and_basicsr_ema_preference(tmp_path):
    ema, raw = _distinct(nets.WithBN(), 1), _distinct(nets.WithBN(), 2)
    torch.save({"state_dict": {"model." + k: v for k, v in raw.items()}, "epoch": 3,
                "optimizer_states": [{"state": {}, "param_groups": []}]}, tmp_path / "lightning.ckpt")
    assert _same(load_model(tmp_path / "lightning.ckpt", arch=f"{NETS}:WithBN"), raw)
    torch.save({"params": raw, "params_ema": ema}, tmp_path / "net_g.pth")
    model = load_model(tmp_path / "net_g.pth", arch=f"{NETS}:WithBN")
    assert _same(model, ema) and model.load_report.container == "params_ema"
    assert "(params_ema)" in model.load_report.summary()


def test_optimizer_only_file_is_refused(tmp_path):
    net = nets.WithBN()
    opt = torch.optim.Adam(net.parameters())
    net(X).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "optim.pth")
    torch.save({"optimizer": opt.state_dict(), "epoch": 4}, tmp_path / "training_state.pth")
    for name in ("optim.pth", "training_state.pth"):
        with pytest.raises(CheckpointError, match=rf"{name}: holds an optimizer state only"):
            load_model(tmp_path / name, arch=f"{NETS}:WithBN")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_run_in_float32_or_keep_theirs(tmp_path, dtype):
    ref = nets.KwargsOnly(embed_dim=8, depth=1)
    state = {k: v.to(dtype) for k, v in _distinct(ref).items()}
    torch.save({"params_ema": state}, tmp_path / "half.pth")
    kw = {"embed_dim": 8, "depth": 1}
    model = load_model(tmp_path / "half.pth", arch=f"{NETS}:KwargsOnly", arch_kwargs=kw)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    out = model(X)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    kept = load_model(tmp_path / "half.pth", arch=f"{NETS}:KwargsOnly", arch_kwargs=kw, dtype="keep")
    assert all(p.dtype == dtype for p in kept.parameters())
    if dtype == torch.bfloat16:  # CPU kernels exist for bf16 convolutions
        kept_out = kept(X)
        assert kept_out.dtype == torch.float32 and torch.allclose(kept_out, out, atol=0.1)


# ------------------------------------------------- issue 13 kind 1: no load keeps random weights unannounced

def test_strict_false_refuses_a_file_whose_names_all_differ(tmp_path):
    state = _distinct(nets.WithBN())
    torch.save({"params": {"netG.backbone." + k: v for k, v in state.items()}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "other.pth", arch=f"{NETS}:WithBN", strict=False)
    text = str(info.value)
    assert "other.pth" in text and "only 0/" in text and "conv.weight" in text and "\n" not in text


def test_probe_family_strict_false_other_prefix_is_never_random(tmp_path):
    """pub_08: a BasicSR file for probe's resnet whose keys carry a prefix, loaded with strict=False."""
    sd = _distinct(build("resnet", size="tiny"), 123)
    torch.save({"params": {"net_g." + k: v for k, v in sd.items()}}, tmp_path / "net_g_5000.pth")
    model = load_model(tmp_path / "net_g_5000.pth", family="resnet", size="tiny", strict=False)
    assert _same(model, sd)  # the known wrapper prefix is removed: every tensor comes from the file
    torch.save({"params": {"weird.stuff." + k: v for k, v in sd.items()}}, tmp_path / "weird.pth")
    with pytest.raises(CheckpointError, match=r"weird.pth.*only 0/\d+ model tensors"):
        load_model(tmp_path / "weird.pth", family="resnet", size="tiny", strict=False)


def test_partial_match_and_missing_buffers_need_an_allow_pattern(tmp_path):
    state = _distinct(nets.WithBN())
    partial = {k: v for k, v in state.items() if not k.startswith("head.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial.pth.*2 tensors \(head.weight, head.bias\).*initial values"):
        load_model(tmp_path / "partial.pth", arch=f"{NETS}:WithBN", strict=False)
    with pytest.raises(CheckpointError, match="missing key"):  # strict: refused as well
        load_model(tmp_path / "partial.pth", arch=f"{NETS}:WithBN")
    with pytest.warns(UserWarning, match=r"loaded \d+/\d+ tensors .*kept initial values \(allowed\): head"):
        model = load_model(tmp_path / "partial.pth", arch=f"{NETS}:WithBN", strict=False, allow_missing=["head.*"])
    assert _same(model, partial) and model.load_report.allowed_missing == ["head.weight", "head.bias"]
    no_stats = {k: v for k, v in state.items() if "running_" not in k}  # BN statistics are tensors too
    torch.save(no_stats, tmp_path / "nostats.pth")
    with pytest.raises(CheckpointError, match="running_mean"):
        load_model(tmp_path / "nostats.pth", arch=f"{NETS}:WithBN", strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _same(load_model(tmp_path / "nostats.pth", arch=f"{NETS}:WithBN", strict=False,
                                allow_missing="bn.running_*"), no_stats)


def test_trained_external_model_round_trips_through_save_weights(tmp_path):
    model = build("external", arch=f"{NETS}:KwargsOnly", arch_kwargs={"embed_dim": 8, "depth": 1}, pad_multiple=4)
    model.load_state_dict(_distinct(model))
    save_weights(model, tmp_path / "model.safetensors")
    again = load_model(tmp_path / "model.safetensors")  # the spec (arch, kwargs, conventions) is in the file
    assert _same(again, model.state_dict()) and again._probe_conv.pad_multiple == 4
    with torch.no_grad():
        assert torch.allclose(again(X), model(X))


# ------------------------------------------------------------------------------------------ model cards

def test_model_card_loads_with_paths_relative_to_it(tmp_path):
    from probe.models.card import read_card

    (tmp_path / "sub").mkdir()
    ref = nets.Needs8()
    torch.save({"params_ema": _distinct(ref)}, tmp_path / "sub" / "weights.pth")
    card = tmp_path / "sub" / "needs8.toml"
    import os

    rel = os.path.relpath(ARCHS / "nets.py", card.parent)  # relative to the card, not the working directory
    card.write_text(f'name = "U-Net 8"\narch = "{rel}:Needs8"\nweights = "weights.pth"\npad_multiple = 8\n'
                    '[kwargs]\nwidth = 8\n')
    parsed = read_card(card)
    model = parsed.load()
    assert parsed.name == "U-Net 8" and model(torch.rand(1, 3, 21, 27)).shape == (1, 3, 21, 27)
    for text, key in (('weights = "w.pth"\narch = "a.py:B"\npadmultiple = 8\n', "unknown key 'padmultiple'"),
                      ('weights = "w.pth"\narch = "a.py:B"\npad_multiple = "8"\n', "'pad_multiple' must be a int"),
                      ('weights = "w.pth"\n', "exactly one of 'arch'"),
                      ('weights = "w.pth"\narch = "a.py:B"\noutput_is = "rain"\n', "output_is")):
        card.write_text(text)
        with pytest.raises(ConfigError, match=key):
            read_card(card)


def test_a_family_loaded_as_a_user_class_gives_the_native_results(tmp_path):
    """Reference check: probe's own ResNet loaded through the external route (package.module:Class, a plain
    .pth with a DataParallel prefix) measures exactly what the native family load measures."""
    from probe.probes.decomposition import Decomposition
    from probe.probes.evaldata import eval_data_from_info

    native = build("resnet", size="tiny")
    native.load_state_dict(_distinct(native, 3))
    save_weights(native, tmp_path / "model.safetensors")
    torch.save({"state_dict": {"module." + k: v for k, v in native.state_dict().items()}}, tmp_path / "r.pth")
    external = load_model(tmp_path / "r.pth", arch="probe.models.resnet:ResNet", arch_kwargs={"size": "tiny"})
    reference = load_model(tmp_path / "model.safetensors")
    assert external.probe_points() == reference.probe_points()  # the class's own HookPoints are kept
    data = eval_data_from_info({"background": "smooth", "background_options": {}, "n_images": 2, "patch": 24,
                                "seed": 1, "splits": {"id": {"type": "rain", "preset": "small"},
                                                      "ood": {"type": "rain", "preset": "large"}}})
    a, b = Decomposition().run(external, data).metrics, Decomposition().run(reference, data).metrics
    assert [m["metric"] for m in a] == [m["metric"] for m in b]
    assert np.allclose([m["value"] for m in a], [m["value"] for m in b], equal_nan=True)
