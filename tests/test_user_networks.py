"""User networks as written: constructor styles, outputs chosen on evidence (and said), misbehaving networks,
BasicSR option files. One tiny architecture per pattern in tests/external_archs/patterns.py."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.cli import main
from probe.errors import ConfigError, DataError
from probe.models.checkpoint import load_model
from probe.models.output_select import probe_batch, psnr

ARCHS = Path(__file__).parent / "external_archs"
PAT = f"{ARCHS / 'patterns.py'}"
sys.path.insert(0, str(ARCHS))
import patterns  # noqa: E402

sys.path.remove(str(ARCHS))


def _save(net: torch.nn.Module, path: Path, zero: tuple[str, ...] = (), container: str | None = None) -> Path:
    torch.manual_seed(1)
    state = net.state_dict()
    for name in zero:  # the convolution beside the known restoration is set to zero
        state = {k: (torch.zeros_like(v) if k.startswith(name + ".") else v) for k, v in state.items()}
    torch.save({container: state} if container else state, path)
    return path


def _restores(model: torch.nn.Module, size: int = 64) -> tuple[float, float]:
    degraded, clean = probe_batch(2, size, seed=5)  # another seed than the check's
    with torch.no_grad():
        return psnr(model(degraded), clean), psnr(degraded, clean)


# ------------------------------------------------------------------------------------ constructors


def test_constructor_computing_with_tensors_and_import_time_default_module_build_for_real(tmp_path):
    for cls in ("TensorCtor", "DefaultModule"):
        path = _save(getattr(patterns, cls)(), tmp_path / f"{cls}.pth")
        model = load_model(path, arch=f"{PAT}:{cls}")
        assert next(model.parameters()).device.type == "cpu"
        out = model(torch.rand(1, 3, 20, 24))
        assert out.shape == (1, 3, 20, 24) and torch.isfinite(out).all()
    assert model.output_choice.reason.startswith("the only image-shaped output")


def test_settings_object_and_factory_constructors(tmp_path):
    ref = patterns.SettingsNet(argparse.Namespace(recurrent_iter=2, width=4))
    path = _save(ref, tmp_path / "prenet.pth")
    model = load_model(path, arch=f"{PAT}:SettingsNet", arch_kwargs={"recurrent_iter": 2, "width": 4},
                       arch_args="namespace")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)
    assert model.spec["kwargs"]["arch_args"] == "namespace"
    with pytest.raises(ConfigError, match=r"SettingsNet\(\*\*\{'recurrent_iter': 2, 'width': 4\}\).*arch-args"):
        load_model(path, arch=f"{PAT}:SettingsNet", arch_kwargs={"recurrent_iter": 2, "width": 4})
    fact = _save(patterns.make_model(width=6), tmp_path / "f.pth")
    made = load_model(fact, arch=f"{PAT}:make_model", arch_kwargs={"width": 6})
    assert type(made).__name__ == "_Plain" and made(x).shape == x.shape


@pytest.mark.parametrize("cls, exc", [("Raises", "ValueError: width must be <= 4"),
                                      ("Asserts", "AssertionError: width must be a multiple of 3")])
def test_constructor_exceptions_are_one_line_exit_2_and_debug_shows_the_traceback(tmp_path, capsys, cls, exc):
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "w.pth")
    argv = ["measure", str(tmp_path / "w.pth"), "--arch", f"{PAT}:{cls}", "--out", str(tmp_path / "r.h5")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and exc in err and cls in err and "patterns.py" in err
    with pytest.raises(ConfigError) as info:
        main(["--debug", *argv])
    cause = info.value
    while isinstance(cause, ConfigError):
        cause = cause.__cause__
    assert type(cause).__name__ in ("ValueError", "AssertionError")  # the user's own exception, chained


def test_import_time_failure_of_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad_arch.py").write_text("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n")
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pth")
    assert main(["layers", str(tmp_path / "w.pth"), "--arch", f"{tmp_path / 'bad_arch.py'}:Net"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("probe: error: ") and "bad_arch.py: importing it failed: SystemExit" in err[-1]


# ------------------------------------------------------------------------------------------ outputs


def test_first_output_not_the_image_is_not_measured_the_last_is_chosen_and_said(tmp_path):
    path = _save(patterns.FirstNotImage(), tmp_path / "two.pth", zero=("s2",))
    model = load_model(path, arch=f"{PAT}:FirstNotImage")
    choice = model.output_choice
    assert choice.path == "1" and choice.output_is == "image"
    assert "best restoration of the probe batch" in choice.reason and "next 0" in choice.reason
    got, identity = _restores(model)
    assert got > identity  # it is the erosion, which removes streaks; stage 1 is random
    assert "output 1 of list[" in model.load_report.summary()
    assert len(choice.candidates) == 2 and choice.candidates[1].psnr_clean > choice.candidates[0].psnr_clean


def test_nested_outputs_final_last_and_dotted_selectors(tmp_path):
    path = _save(patterns.NestedFinalLast(), tmp_path / "nested.pth", zero=("s2",))
    model = load_model(path, arch=f"{PAT}:NestedFinalLast")
    assert model.output_choice.path == "1.1"
    assert [c.path for c in model.output_choice.candidates] == ["0", "1.0", "1.1"]  # maps are 1-channel
    x = torch.rand(2, 3, 16, 16)
    ref = patterns.NestedFinalLast()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x)[1][-1], atol=1e-6)
        given = load_model(path, arch=f"{PAT}:NestedFinalLast", output="1.-1")
        assert given.output_choice.path == "1.1" and given.output_choice.reason.startswith("given")
        assert torch.allclose(load_model(path, arch=f"{PAT}:NestedFinalLast", output=0)(x), x * 0.5)
    with pytest.raises(ConfigError, match=r"output='1.5' does not select .*no '1.5'"):
        load_model(path, arch=f"{PAT}:NestedFinalLast", output="1.5")
    with pytest.raises(ConfigError, match=r"output='2.0' is not an image-shaped output"):
        load_model(path, arch=f"{PAT}:NestedFinalLast", output="2.0")


def test_indistinguishable_outputs_are_refused_with_their_numbers(tmp_path):
    from probe.models.output_select import Candidate, decide

    cands = [Candidate("0", [2, 3, 64, 64], 20.0, 10.0, 30.0), Candidate("1", [2, 3, 64, 64], 20.2, 10.0, 30.0)]
    with pytest.raises(ConfigError, match=r"do(es)? not tell apart: 0: 20.00 dB as image.*1: 20.20 dB.*--output"):
        decide(cands, 19.0, None, None, {("0", "1"): 25.0})
    chosen, why = decide(cands, 19.0, None, None, {("0", "1"): 45.0})
    assert chosen.path == "0" and "same image" in why


def test_a_layer_predicting_network_is_detected_and_restored_as_input_minus_output(tmp_path):
    path = _save(patterns.Layer(), tmp_path / "layer.pth", zero=("tail",))
    model = load_model(path, arch=f"{PAT}:Layer")
    choice = model.output_choice
    assert choice.output_is == "layer" and "predicts the degradation" in choice.reason
    got, identity = _restores(model)
    assert got > identity
    as_image = load_model(path, arch=f"{PAT}:Layer", output_is="image")
    assert any("worse than doing nothing" in w for w in as_image.output_choice.warnings)
    assert _restores(as_image)[0] < identity - 5


def test_a_random_network_warns_that_it_is_worse_than_the_identity(tmp_path):
    net = patterns.make_model()
    with torch.no_grad():
        net.tail.weight.mul_(20)
    path = _save(net, tmp_path / "rand.pth")
    model = load_model(path, arch=f"{PAT}:make_model")
    assert any("worse than doing nothing" in w for w in model.output_choice.warnings)
    assert "warning: even the chosen output" in model.load_report.summary()


# ------------------------------------------------------------------------------- misbehaving networks


def test_in_place_network_gets_a_copy_and_is_recorded(tmp_path):
    path = _save(patterns.InPlace(), tmp_path / "inplace.pth")
    model = load_model(path, arch=f"{PAT}:InPlace")
    plain = load_model(path, arch=f"{PAT}:make_model")
    x = torch.rand(2, 3, 16, 16)
    keep = x.clone()
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    assert torch.equal(x, keep) and model.output_choice.inplace and not plain.output_choice.inplace
    assert "changes its input in place" in model.load_report.summary()


def test_non_deterministic_network_is_detected_recorded_and_seeded(tmp_path):
    path = _save(patterns.Noisy(), tmp_path / "noisy.pth")
    model = load_model(path, arch=f"{PAT}:Noisy")
    c = model.output_choice
    assert not c.deterministic and c.seeded and c.max_difference > 1e-3
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # seeded per forward: stored numbers repeat
    assert load_model(path, arch=f"{PAT}:make_model").output_choice.deterministic
    from probe.models.output_select import choice_info

    assert choice_info(model)["deterministic"] == "false"
    assert json.loads(choice_info(model)["output_choice"])["seeded"] is True


def test_network_running_only_at_32_px_is_traced_there_and_errors_name_the_size(tmp_path, capsys):
    path = _save(patterns.Only32(), tmp_path / "only32.pth")
    model = load_model(path, arch=f"{PAT}:Only32")
    assert model.output_choice.size == 32
    assert model.probe_points() == ["head", "tail"]
    with pytest.raises(DataError, match=r"forward failed on input 1×3×64×64: AssertionError.*runs at 32×32"):
        model(torch.rand(1, 3, 64, 64))
    assert main(["layers", str(path), "--arch", f"{PAT}:Only32"]) == 0
    assert "1×8×32×32" in capsys.readouterr().out


def test_out_of_memory_is_named_as_memory(tmp_path, monkeypatch):
    path = _save(patterns.make_model(), tmp_path / "m.pth")
    model = load_model(path, arch=f"{PAT}:make_model")
    from probe.models.output_select import OutOfMemory

    def boom(self, x):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 98765432100 bytes")

    monkeypatch.setattr(type(model).__mro__[2], "forward", boom)
    with pytest.raises(OutOfMemory, match=r"out of memory in the forward on a batch of 1×3×16×16.*--tile"):
        model(torch.rand(1, 3, 16, 16))


# ----------------------------------------------------------------------------------------- model card


def test_model_card_keys_for_constructor_style_output_and_weights_key(tmp_path):
    ref = patterns.SettingsNet(argparse.Namespace(recurrent_iter=1, width=4))
    _save(ref, tmp_path / "w.pth", container="params")
    (tmp_path / "card.toml").write_text(f'arch = "{PAT}:SettingsNet"\nweights = "w.pth"\narch_args = "namespace"\n'
                                        'weights_key = "params"\noutput_is = "image"\n[kwargs]\nrecurrent_iter = 1\n'
                                        'width = 4\n')
    from probe.models.card import read_card

    model = read_card(tmp_path / "card.toml").load()
    assert model.load_report.container == "params" and model.output_choice.output_is == "image"


# ---------------------------------------------------------------------------------- BasicSR options


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ARCHS / "basicsr_repo", repo)
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        (repo / "datasets/test/Rain100L" / sub).mkdir(parents=True)
    for i in range(3):
        clean = (rng.random((32, 32, 3)) * 200).astype(np.uint8)
        rain = np.clip(clean.astype(int) + (rng.random((32, 32, 1)) > 0.9) * 100, 0, 255).astype(np.uint8)
        Image.fromarray(clean).save(repo / f"datasets/test/Rain100L/target/{i}.png")
        Image.fromarray(rain).save(repo / f"datasets/test/Rain100L/input/{i}.png")
    return repo


def test_basicsr_options_read_without_basicsr_and_measured_from_the_cli(tmp_path, capsys):
    repo = _repo(tmp_path)
    from probe.models.basicsr_options import read_options

    opts = read_options(repo / "options/test_TinyDerain.yml")  # code root found above the option file
    assert opts.arch == "basicsr.archs.tinyderain_arch:TinyDerain"
    assert opts.kwargs == {"inp_channels": 3, "dim": 8, "num_blocks": 2} and opts.weights_key == "params"
    assert opts.test_sets["Rain100L"] == ((repo / "datasets/test/Rain100L/input").resolve(),
                                         (repo / "datasets/test/Rain100L/target").resolve())
    assert opts.metrics == {"psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True}}
    from probe.models.arch import build_arch

    ref = build_arch(opts.arch, opts.kwargs)
    weights = repo / "experiments/pretrained_models/net_g_latest.pth"
    weights.parent.mkdir(parents=True)
    torch.save({"params": ref.state_dict(), "params_ema": {k: v * 0 for k, v in ref.state_dict().items()}}, weights)
    out = tmp_path / "store/results.h5"
    code = main(["--quiet", "measure", "--options", str(repo / "options/test_TinyDerain.yml"), "--code-root",
                 str(repo), "--probes", "generalization", "--eval-patch", "32", "--out", str(out)])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "crop_border=4, test_y_channel=True" in text.out and "(params)" in text.out
    from probe.store import read_metrics

    df = read_metrics(out)
    assert set(df["split"]) >= {"Rain100L"} and df["model_name"].iloc[0] == "TinyDerain_Rain100L"
    assert json.loads(df["basicsr_metrics"].iloc[0])["psnr"]["crop_border"] == 4
    assert (out.parent / "basicsr_pairs/Rain100L.csv").read_text().count("\n") == 4
    # the code base's own PSNR (crop 4, Y channel, 8-bit) beside probe's, the same as computing it directly
    assert "scored with the code base's own metrics (psnr: crop_border=4, test_y_channel=True) as psnr_codebase, " \
        in text.out  # only what its val.metrics lists
    assert "ssim_codebase" not in set(df["metric"])
    from PIL import Image

    from probe.codebase_metrics import codebase_scores

    def load(sub):
        return torch.stack([torch.from_numpy(np.array(Image.open(repo / f"datasets/test/Rain100L/{sub}/{i}.png")))
                            .permute(2, 0, 1).float() / 255 for i in range(3)])

    with torch.no_grad():
        expected = codebase_scores(ref(load("input")).clamp(0, 1), load("target"), 4, True)[0].mean().item()
    row = df[(df["metric"] == "psnr_codebase") & (df["split"] == "Rain100L")]
    assert len(row) == 1 and row["value"].iloc[0] == pytest.approx(expected, abs=1e-6)
    rgb = df[(df["metric"] == "psnr") & (df["split"] == "Rain100L")]["value"].iloc[0]
    assert abs(rgb - expected) > 0.01  # a different measurement, not a copy


def test_basicsr_options_errors_name_the_file_and_key(tmp_path):
    repo = _repo(tmp_path)
    from probe.models.basicsr_options import read_options

    bad = repo / "options/bad.yml"
    bad.write_text("network_g:\n  type: NoSuchNet\n")
    with pytest.raises(ConfigError, match=r"bad.yml: network_g type 'NoSuchNet' is defined in none of the 2"):
        read_options(bad, repo)
    bad.write_text("network_g: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yml: not a valid YAML option file"):
        read_options(bad, repo)
    bad.write_text("network_g:\n  type: TinyDerain\ndatasets:\n  test_1:\n    name: X\n    dataroot_gt: a\n")
    with pytest.raises(ConfigError, match=r"datasets.test_1: needs dataroot_lq"):
        read_options(bad, repo)
