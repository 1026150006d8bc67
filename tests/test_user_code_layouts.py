"""How a user's own code is laid out and built: expand()ed parameters (RCDNet), package-style imports
(``from model import common`` under a repository's ``src``, ``--code-root``), missing dependencies, and the
summary line of an external network measured beside a grid."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from probe.cli import main
from probe.errors import CheckpointError, ConfigError
from probe.models.checkpoint import load_model

ARCHS = Path(__file__).parent / "external_archs"
UNROLLED = f"{ARCHS / 'unrolled.py'}:Unrolled"
sys.path.insert(0, str(ARCHS))
import unrolled  # noqa: E402

sys.path.remove(str(ARCHS))


def _trained_unrolled(path: Path) -> tuple[torch.nn.Module, Path]:
    """A reference Unrolled whose weights differ from a fresh one's (other step sizes, other convolutions),
    saved as a plain state dict."""
    torch.manual_seed(3)
    ref = unrolled.Unrolled()
    with torch.no_grad():
        for conv in ref.convs:
            conv.weight.add_(0.5 * torch.rand_like(conv.weight))
    for s in range(3):  # "trained": the step sizes moved apart (the file holds them as plain tensors)
        setattr(ref, f"eta{s}", torch.nn.Parameter(torch.tensor([0.3, 0.2, 0.1]).view(3, 1, 1) * (s + 1)))
    torch.save(ref.state_dict(), path)
    return ref, path


# --------------------------------------------------------------------------------- expand()ed parameters


def test_expanded_parameters_are_cloned_said_and_the_weights_load(tmp_path):
    ref, path = _trained_unrolled(tmp_path / "unrolled.pth")
    model = load_model(path, arch=UNROLLED)
    report = model.load_report
    assert report.cloned == ["eta0", "eta1", "eta2", "frozen", "scale"]
    assert "cloned 5 expanded parameters (eta0, eta1, eta2, … 2 more) so weights can be copied into them" \
        in report.summary()
    saved = torch.load(path, weights_only=True)
    for name in ("eta0", "eta1", "eta2", "frozen"):
        p = getattr(model, name)
        assert isinstance(p, torch.nn.Parameter) and p.is_contiguous() and torch.equal(p, saved[name])
    assert model.eta0.requires_grad and not model.frozen.requires_grad
    assert "scale" in dict(model.named_buffers()) and model.scale.is_contiguous()
    assert model.tied.weight is model.convs[0].weight  # tied tensors stay tied
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)


def test_other_load_state_dict_failures_are_one_short_line(tmp_path, monkeypatch, capsys):
    from probe.models.loadcheck import load_error

    _, path = _trained_unrolled(tmp_path / "unrolled.pth")
    net = unrolled.Unrolled()
    with pytest.raises(RuntimeError) as info:  # torch's own message: one paragraph per tensor
        net.load_state_dict(torch.load(path, weights_only=True))
    assert len(str(info.value)) > 600
    error = load_error("unrolled.pth", net, info.value)
    text = str(error)
    assert isinstance(error, CheckpointError) and "\n" not in text and len(text) < 400
    assert "Unrolled failed for 5 tensors (eta0, eta1, eta2, … 2 more)" in text
    assert "more than one element of the written-to tensor" in text
    monkeypatch.setattr("probe.models.loadcheck.clone_overlapping", lambda model: [])  # as before the fix
    assert main(["layers", str(path), "--arch", UNROLLED]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 450 and "eta0, eta1, eta2" in err


# ------------------------------------------------------------------------------ package-style imports


def _package_repo(root: Path, package: str) -> Path:
    """``root/src/<package>/{__init__,common,net}.py`` with ``net.py`` doing ``from <package> import common``
    (RCDNet's ``src/model/rcdnet.py``); returns the arch file."""
    pkg = root / "src" / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "common.py").write_text("from torch import nn\n\n\ndef conv(c):\n    return nn.Conv2d(c, c, 3, padding=1)\n")
    (pkg / "net.py").write_text(f"from torch import nn\n\nfrom {package} import common\n\n\n"
                                "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                                "        self.body = common.conv(3)\n\n    def forward(self, x):\n"
                                "        return x + self.body(x)\n")
    return pkg / "net.py"


@pytest.fixture
def package_name():
    name = "probe_test_rcdpkg"
    yield name
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_package_style_import_needs_code_root_and_the_error_names_the_folder(tmp_path, capsys, package_name):
    arch = _package_repo(tmp_path / "repo", package_name)
    src = (tmp_path / "repo" / "src").resolve()
    weights = tmp_path / "net.pth"
    torch.nn.Module.__init__(net := torch.nn.Module())
    net.body = torch.nn.Conv2d(3, 3, 3, padding=1)
    torch.save(net.state_dict(), weights)
    assert main(["layers", str(weights), "--arch", f"{arch}:Net"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"No module named '{package_name}'" in err
    assert f"a folder '{package_name}' is in {src}: pass --code-root {src}" in err
    assert "pip install" not in err
    assert main(["layers", str(weights), "--arch", f"{arch}:Net", "--code-root", str(src)]) == 0
    assert "loaded 2/2 tensors" in capsys.readouterr().out
    model = load_model(weights, arch=f"{arch}:Net", code_root=str(tmp_path / "repo" / "src"))
    assert model.spec["kwargs"]["code_root"] == str(src)  # recorded absolute: the spec rebuilds it anywhere
    assert str(src) not in sys.path  # only while the file is imported


def test_a_model_card_takes_code_root_relative_to_the_card(tmp_path, package_name):
    from probe.models.card import read_card

    arch = _package_repo(tmp_path / "repo", package_name)
    net = unrolled.nn.Module()
    net.body = torch.nn.Conv2d(3, 3, 3, padding=1)
    torch.save(net.state_dict(), tmp_path / "repo" / "net.pth")
    card = tmp_path / "repo" / "net.toml"
    card.write_text(f'arch = "{arch.relative_to(card.parent)}:Net"\nweights = "net.pth"\ncode_root = "src"\n')
    read = read_card(card)
    assert read.conventions["code_root"] == str((tmp_path / "repo" / "src").resolve())
    model = read.load()
    assert model.load_report.matched == 2
    bad = tmp_path / "repo" / "bad.toml"
    bad.write_text(f'arch = "{arch}:Net"\nweights = "net.pth"\ncode_root = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"--code-root .*nowhere: no such folder"):
        read_card(bad).load()


def test_a_missing_dependency_says_to_install_the_networks_requirements(tmp_path, capsys):
    (tmp_path / "dep_arch.py").write_text("import probe_absent_dependency_xyz\nimport cv2\n")
    (tmp_path / "cv_arch.py").write_text("import cv2_absent.sub\n")
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pth")
    assert main(["layers", str(tmp_path / "w.pth"), "--arch", f"{tmp_path / 'dep_arch.py'}:Net"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No module named 'probe_absent_dependency_xyz' (install the network's " \
        "own requirements: pip install probe_absent_dependency_xyz)" in err and "--code-root" not in err
    with pytest.raises(ConfigError, match=r"pip install cv2_absent\)"):
        load_model(tmp_path / "w.pth", arch=f"{tmp_path / 'cv_arch.py'}:Net")


def test_the_summary_line_names_your_network_beside_the_grid_and_keeps_the_grids_wording():
    from probe.measure.cli import _measured_what

    grid = {"runs": 30, "study": "derain_ntrend"}
    assert _measured_what(grid, None) == "30 model(s) of derain_ntrend"
    mine = {"runs": 1, "study": "derain_ntrend", "model_id": "rcdnet_tiny"}
    assert _measured_what(mine, "reference") == "rcdnet_tiny (your network) beside derain_ntrend"
    assert _measured_what(mine, None) == "rcdnet_tiny (your network)"
