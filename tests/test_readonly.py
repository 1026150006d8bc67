"""Read-only places (issue 25 item 2): reading a store (measure with everything stored, read_metrics) works on a
read-only folder; anything that must write (`measure` with something new, `report`, `train`, `grid run`) fails
in one line naming the folder, exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import study_toml, tiny_study

from probe.cli import main
from probe.store import read_metrics

SPEC = study_toml(tiny_study({  # the shared tiny study (conftest), shrunk to one cell
    "study": {"name": "ro", "probes": ["generalization"]}, "base.data": {"patch": 16},
    "base.train": {"iterations": 1, "batch": 2, "val_every": 0},
    "base.eval": {"n_images": 2, "splits": {"id": {"type": "rain", "preset": "small"}}}, "axes": {"seed": [0]}}))
CONFIG = """name = "r"
seed = 0
device = "cpu"
[model]
family = "resnet"
size = "tiny"
[data]
background = "smooth"
patch = 16
[train]
iterations = 1
batch = 2
"""


def _make_read_only(folder: Path) -> str | None:
    """Remount a tmpfs read-only (root), else chmod 555 (others); None when neither can make it read-only."""
    if os.geteuid() == 0:
        if shutil.which("mount") and subprocess.run(["mount", "-o", "remount,ro", str(folder)],
                                                    capture_output=True).returncode == 0:
            return "tmpfs"
        return None
    os.chmod(folder, 0o555)
    return "chmod"


@pytest.fixture
def read_only_store(tmp_path):
    """A one-model grid measured into a folder that is then made read-only."""
    (tmp_path / "ro.toml").write_text(SPEC)
    assert main(["--quiet", "grid", "run", str(tmp_path / "ro.toml"), "--out", str(tmp_path / "grid"),
                 "--workers", "1"]) == 0
    folder = tmp_path / "store"
    folder.mkdir()
    mounted = os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if os.geteuid() == 0 and not mounted:
        pytest.skip("root without mount rights cannot make a read-only folder")
    assert main(["--quiet", "measure", str(tmp_path / "grid"), "--out", str(folder / "results.h5")]) == 0
    how = _make_read_only(folder)
    if how is None:
        pytest.skip("cannot make the folder read-only here")
    try:
        yield tmp_path, folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)
        else:
            os.chmod(folder, 0o755)


def _one_line_error(capsys, code: int, folder: Path) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("probe: error: "), err
    assert str(folder) in err
    return err


@pytest.mark.slow
def test_reading_works_and_writing_fails_in_one_line(read_only_store, capsys):
    root, folder = read_only_store
    store = folder / "results.h5"
    assert len(read_metrics(store)) > 0  # readers never lock nor write
    capsys.readouterr()
    assert main(["--quiet", "measure", str(root / "grid"), "--out", str(store)]) == 0  # all stored: no write
    assert "0 probe results computed, 1 already stored" in capsys.readouterr().out
    code = main(["--quiet", "measure", str(root / "grid"), "--probes", "decomposition", "--out", str(store)])
    assert "read-only" in _one_line_error(capsys, code, folder)
    assert "read-only" in _one_line_error(capsys, main(["--quiet", "report", str(folder)]), folder)
    cfg = root / "cfg.toml"
    cfg.write_text(CONFIG)
    assert "read-only" in _one_line_error(capsys, main(["--quiet", "train", str(cfg), "--out",
                                                        str(folder / "run")]), folder)
    assert "read-only" in _one_line_error(capsys, main(["--quiet", "grid", "run", str(root / "ro.toml"), "--out",
                                                        str(folder / "grid")]), folder)


def test_require_writable_names_the_folder(tmp_path):
    from probe.errors import ConfigError
    from probe.fsutil import require_writable

    assert require_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"output folder {blocker}/sub is not writable"):
        require_writable(blocker / "sub")
