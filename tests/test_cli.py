"""The CLI's contract: fast help, version, one-line errors with exit 2, tracebacks only with --debug."""

from __future__ import annotations

import subprocess
import sys

import pytest

import probe
from probe.cli import main
from probe.errors import ConfigError
from probe.registry import Registry


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and probe.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "synth" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for name in ("resnet", "unet", "swinir", "nafnet", "rain", "noise", "blur", "decomposition", "cka"):
        assert name in listing


def test_help_does_not_import_torch():
    code = "import sys; from probe.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch = 'x'\n")
    run = [sys.executable, "-m", "probe.cli", "train", str(bad)]
    quiet = subprocess.run(run, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().count("\n") == 0 and "train.batch" in quiet.stderr
    loud = subprocess.run(run + ["--debug"], capture_output=True, text=True)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    missing = subprocess.run([sys.executable, "-m", "probe.cli", "train", str(tmp_path / "nope.toml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such config file" in missing.stderr


def test_registry_is_lazy_and_a_broken_entry_names_itself():
    reg = Registry("thing", lazy={"good": "probe.errors:ProbeError", "stale": "probe.nowhere:Gone"})
    assert reg.get("good") is probe.errors.ProbeError
    with pytest.raises(ConfigError, match="thing 'stale' could not be loaded from probe.nowhere:Gone"):
        reg.get("stale")
    with pytest.raises(ConfigError, match="unknown thing 'bad'; available: good, stale"):
        reg.get("bad")

    @reg.register("mine")
    class Mine:
        pass

    assert reg.get("MINE") is Mine and "mine" in reg
