"""Your own network beside the grid, from the CLI alone: arch file + checkpoint + folders of pairs → measure →
report; failures stored and shown; one store commit per measure() call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.cli import main
from probe.grid.runner import run_grid
from probe.measure import measure
from probe.report.context import ReportContext
from probe.report.sections import SECTIONS
from probe.store import read_metrics

ARCHS = Path(__file__).parent / "external_archs"
ARCH = f"{ARCHS / 'nets.py'}:MultiStage"

SPEC = """
[study]
name = "extstudy"
probes = ["generalization", "decomposition"]
[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
patch = 24
background = "smooth"
[base.train]
iterations = 2
batch = 2
[base.eval]
n_images = 2
[base.eval.splits.id]
type = "rain"
preset = "small"
[base.eval.splits.ood]
type = "rain"
preset = "large"
[axes]
n_backgrounds = [1, 4]
"""


def _pairs(root: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        clean = (rng.random((36, 40, 3)) * 160).astype(np.uint8)
        rain = clean.copy()
        rain[:, (3 * i + 2) % 40] = 250
        (root / "rain").mkdir(parents=True, exist_ok=True)
        (root / "norain").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rain).save(root / "rain" / f"rain-{i}.png")
        Image.fromarray(clean).save(root / "norain" / f"norain-{i}.png")
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ext")
    (root / "extstudy.toml").write_text(SPEC)
    assert run_grid(root / "extstudy.toml", root / "models", workers=1)["done"] == 2
    import sys

    sys.path.insert(0, str(ARCHS))
    try:
        import nets
    finally:
        sys.path.remove(str(ARCHS))
    torch.manual_seed(0)
    ms = nets.MultiStage(width=8)
    torch.save({"params_ema": {"module." + k: v.half() for k, v in ms.state_dict().items()}, "iter": 10},
               root / "net_g_10.pth")
    _pairs(root / "test_a", 3, 1)
    _pairs(root / "test_b", 2, 2)
    return root


def test_cli_arch_checkpoint_and_pairs_to_a_report_beside_the_grid(study, capsys):
    rep = study / "rep"
    store = rep / "results.h5"
    assert main(["measure", str(study / "models"), "--out", str(store), "-q"]) == 0
    assert main(["measure", str(study / "net_g_10.pth"), "--arch", ARCH, "--arch-kwargs", '{"width": 8}',
                 "--out", str(store), "-q"]) == 0
    out = capsys.readouterr().out
    assert "loaded 10/10 tensors" in out and "(params_ema)" in out and "prefix 'module.' removed" in out
    assert main(["measure", str(study / "net_g_10.pth"), "--arch", ARCH, "--arch-kwargs", '{"width": 8}',
                 "--name", "MultiStage on real pairs", "--eval-folder", f"id={study / 'test_a'}",
                 "--eval-folder", f"ood={study / 'test_b'}", "--eval-patch", "32", "--out", str(store), "-q",
                 "--codebase-metrics", "crop_border=2,test_y_channel=true"]) == 0
    frame = read_metrics(store)
    synthetic = frame[frame["model_id"] == "net_g_10"]
    grid = frame[frame["model_id"].str.startswith("n_backgrounds")]
    assert set(synthetic["split"]) == {"id", "ood", "clean"} and synthetic["external"].all()
    # the same evaluation images as the grid's models: identical eval descriptions
    assert set(synthetic["eval"]) == set(grid["eval"])
    real = frame[frame["model_id"] == "MultiStage_on_real_pairs"]
    assert json.loads(real["eval"].iloc[0])["splits"]["ood"]["n_images"] == 2
    assert set(real[real["metric"] == "psnr_codebase"]["split"]) == {"id", "ood"}  # beside probe's own PSNR
    assert "psnr_codebase" not in set(synthetic["metric"])  # only where the user's conventions were given
    assert main(["report", str(rep), "-q"]) == 0
    html = (rep / "report.html").read_text()
    assert "section failed" not in html
    assert "Your networks beside the grid" in html and "MultiStage on real pairs" in html
    assert "psnr_codebase" in html
    table = (rep / "external_models.csv").read_text()
    assert "net_g_10" in table and "resnet (grid, n_backgrounds=1)" in table and "real pairs" in table
    overview = (rep / "family_overview.csv").read_text()
    assert "external" in overview and "grid family" in overview
    assert (rep / "figures" / "curves_n_backgrounds.png").is_file()
    assert (rep / "figures" / "examples.png").is_file() and (rep / "figures" / "decomposition_bars.png").is_file()


def test_every_registered_section_runs_on_stores_with_external_models(study):
    store = study / "only_ext" / "results.h5"
    measure(study / "net_g_10.pth", arch=ARCH, arch_kwargs={"width": 8}, out=store,
            probes=["generalization", "decomposition", "activations"],
            eval_folders={"id": str(study / "test_a")}, eval_patch=32)
    both = study / "rep"  # grid + external (built by the test above when run in order; else build it)
    if not (both / "results.h5").is_file():
        measure(study / "models", out=both / "results.h5")
        measure(study / "net_g_10.pth", arch=ARCH, arch_kwargs={"width": 8}, out=both / "results.h5")
    for folder in (store.parent, both):
        ctx = ReportContext.load(folder)
        for name in SECTIONS.names():
            SECTIONS.get(name)(ctx)  # raises on any crash (build_report would only warn)


def test_a_failing_model_and_probe_are_stored_and_the_rest_goes_on(study, capsys, monkeypatch):
    models = study / "models_copy"
    shutil.copytree(study / "models", models)
    runs = sorted(p for p in models.iterdir() if (p / "run.json").is_file())
    weights = runs[0] / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-16] + b"\0" * 16)  # corrupt: the sha256 in run.json no longer matches
    store = study / "fail" / "results.h5"
    assert main(["measure", str(models), "--out", str(store), "-q"]) == 3
    err = capsys.readouterr().err
    assert f"probe: failed: {runs[0].name}: load:" in err and "sha256 mismatch" in err
    frame = read_metrics(store)
    failed = frame[frame["probe"] == "failed"]
    assert list(failed["failed_probe"]) == ["load"] and "sha256 mismatch" in failed["cause"].iloc[0]
    assert set(frame[frame["probe"] == "decomposition"]["model_id"]) == {runs[1].name}  # the other was measured
    assert main(["report", str(store.parent), "-q"]) == 0
    assert "Failures" in (store.parent / "report.html").read_text()
    assert "sha256 mismatch" in (store.parent / "failures.csv").read_text()
    # a probe that raises on one model only: stored with its cause, the other probes and models go on
    weights.write_bytes(good)
    from probe.probes.decomposition import Decomposition

    original = Decomposition.run

    calls = []

    def flaky(self, model, data):
        calls.append(model)
        if len(calls) == 1:
            raise RuntimeError("boom on purpose")
        return original(self, model, data)

    monkeypatch.setattr(Decomposition, "run", flaky)
    summary = measure(models, out=store)
    assert [f["cause"] for f in summary["failed"]] == ["RuntimeError: boom on purpose"]
    assert summary["computed"] == 1 and summary["skipped"] == 2  # the repaired model's generalization
    frame = read_metrics(store)
    assert list(frame[frame["probe"] == "failed"]["failed_probe"]) == ["decomposition"]  # load failure cleared
    monkeypatch.setattr(Decomposition, "run", original)
    again = measure(models, out=store)  # the failed probe is retried; its failure entry removed
    assert again["computed"] == 1 and not again["failed"]
    assert "failed" not in set(read_metrics(store)["probe"])


def test_one_store_commit_per_measure_call(study, monkeypatch):
    import probe.store.segments as segments

    store = study / "commits" / "results.h5"
    commits = []
    real = segments.os.replace

    def counting(src, dst):
        if Path(dst) == store:
            commits.append(dst)
        return real(src, dst)

    monkeypatch.setattr(segments.os, "replace", counting)
    summary = measure(study / "models", out=store)
    assert summary["runs"] == 2 and summary["computed"] == 4
    assert len(commits) == 1


def test_single_checkpoint_errors_are_one_line_exit_2(study, capsys):
    assert main(["measure", str(study / "nope.pth"), "--arch", ARCH]) == 2
    assert "nope.pth: no such file" in capsys.readouterr().err
    assert main(["measure", str(study / "net_g_10.pth"), "--out", str(study / "x" / "r.h5")]) == 2
    assert "pass --arch" in capsys.readouterr().err
    assert main(["measure", str(study / "net_g_10.pth"), "--arch", ARCH, "--eval-folder",
                 f"id={study / 'nofolder'}", "--out", str(study / "x" / "r.h5")]) == 2
    assert "nofolder: no such folder" in capsys.readouterr().err
    for bad, said in (("crop_border=-2", "crop_border = '-2' must be an integer"),
                      ("test_y_channel=maybe", "test_y_channel = 'maybe' must be true or false"),
                      ("border=2", "'border=2' is not crop_border=N")):
        assert main(["measure", str(study / "net_g_10.pth"), "--arch", ARCH, "--eval-folder",
                     f"id={study / 'test_a'}", "--codebase-metrics", bad, "--out", str(study / "x" / "r.h5")]) == 2
        assert said in capsys.readouterr().err
    assert main(["measure", str(study / "net_g_10.pth"), "--arch", ARCH, "--codebase-metrics", "crop_border=1",
                 "--out", str(study / "x" / "r.h5")]) == 2
    assert "--codebase-metrics applies to --eval-folder splits" in capsys.readouterr().err


def test_probe_layers_lists_modules_in_forward_order(study, capsys):
    assert main(["layers", str(study / "net_g_10.pth"), "--arch", ARCH, "--arch-kwargs", '{"width": 8}']) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line[2:].split()[0] for line in out if line[:2] in ("* ", "  ") and "×" in line]
    assert names[:4] == ["head", "head.0", "head.1", "stages.0"]
    assert names.index("tails.0") < names.index("stages.1")  # forward order, not definition order
    starred = [line[2:].split()[0] for line in out if line.startswith("* ") and "×" in line]
    assert starred == ["head", "stages.0", "tails.0", "stages.1", "tails.1"]
    assert any("1×3×64×64" in line for line in out if "tails.1" in line)


def test_without_folders_or_a_study_the_default_study_splits_are_used(tmp_path):
    from probe.demo import bundled_spec
    from probe.grid.spec import StudySpec
    from probe.measure.external import default_eval_data

    data = default_eval_data(tmp_path / "nowhere" / "results.h5")
    spec = StudySpec.from_toml(bundled_spec())
    declared = spec.config_for(spec.cells()[0]).to_dict()["eval"]["splits"]
    assert set(data.splits) == set(declared) and {"id", "ood"} <= set(data.splits)


def test_measure_a_model_card_from_the_cli(study, capsys):
    card = study / "cards" / "ms.toml"
    card.parent.mkdir(exist_ok=True)
    card.write_text(f'name = "MultiStage (card)"\narch = "{ARCHS / "nets.py"}:MultiStage"\n'
                    f'weights = "../net_g_10.pth"\noutput = 0\n[kwargs]\nwidth = 8\n')
    store = study / "card_rep" / "results.h5"
    assert main(["measure", str(card), "--probes", "generalization", "--eval-folder", str(study / "test_b"),
                 "--out", str(store), "-q"]) == 0
    assert "(params_ema)" in capsys.readouterr().out
    frame = read_metrics(store)
    assert set(frame["model_id"]) == {"MultiStage_card"} and set(frame["model_name"]) == {"MultiStage (card)"}
    assert set(frame["split"]) == {"id"} and json.loads(frame["conventions"].iloc[0]) == {"output": 0}
    assert main(["measure", str(card), "--arch", ARCH, "--out", str(store)]) == 2
    assert "the model card names the network" in capsys.readouterr().err
