"""`probe measure` (store, skipping, --force, --splits), `probe report` and `probe demo` on a tiny real grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.cli import main
from probe.grid.runner import run_grid
from probe.measure import measure
from probe.report.build import build_report
from probe.report.sections.headline import headline_numbers
from probe.store import ResultStore, read_array, read_metrics

SPEC = """
[study]
name = "tinystudy"
probes = ["generalization", "decomposition"]

[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
patch = 24
[base.degradation]
type = "rain"
preset = "small"
[base.train]
iterations = 3
batch = 2
[base.eval]
n_images = 3
[base.eval.splits.id]
type = "rain"
preset = "medium"
[base.eval.splits.ood]
type = "rain"
preset = "large"

[axes]
background = ["smooth", "natural"]
n_backgrounds = [1, 2, 4]
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    (root / "tinystudy.toml").write_text(SPEC)
    summary = run_grid(root / "tinystudy.toml", root / "models", workers=2)
    assert summary["done"] == 6
    return root


def test_measure_stores_every_model_probe_and_split(grid):
    store = grid / "reports" / "results.h5"
    summary = measure(grid / "models", out=store)
    assert summary["computed"] == 12 and summary["skipped"] == 0
    frame = read_metrics(store)
    assert set(frame["model_id"]) == {f"background-{b}__n_backgrounds-{n}" for b in ("smooth", "natural")
                                      for n in (1, 2, 4)}
    assert set(frame["probe"]) == {"generalization", "decomposition"}
    assert set(frame["split"]) == {"id", "ood", "clean"}
    assert {"family", "background", "n_backgrounds", "seed", "metric", "value", "complexity_png_bpp"} <= set(frame)
    removal = frame[(frame.metric == "removal_ratio")]
    assert removal["value"].between(-5, 1).all()
    smooth = frame[(frame.background == "smooth")]["complexity_png_bpp"].mean()
    natural = frame[(frame.background == "natural")]["complexity_png_bpp"].mean()
    assert smooth < natural, "measured training-set complexity should order the sources"
    per_image = read_array(store, "background-smooth__n_backgrounds-1", "decomposition", "per_image")
    assert per_image.dims == ("split", "image", "quantity") and per_image.sizes["image"] == 3
    assert (store.parent / "study.json").is_file()


def test_re_measuring_does_no_duplicate_work_unless_forced(grid):
    store = grid / "again" / "results.h5"
    measure(grid / "models", out=store)
    entries = len(ResultStore(store).entries())
    again = measure(grid / "models", out=store)
    assert again["computed"] == 0 and again["skipped"] == 12
    forced = measure(grid / "models", probes=["generalization"], out=store, force=True)
    assert forced["computed"] == 6
    assert len(ResultStore(store).entries()) == entries
    subset = measure(grid / "models", probes=["generalization"], splits=["ood"], out=store)
    assert subset["computed"] == 6  # another evaluation set (one split) is another entry


def test_measure_cli_on_one_run_and_bad_input(grid, capsys):
    run = sorted((grid / "models").glob("background-*"))[0]
    out = grid / "single" / "results.h5"
    assert main(["measure", str(run), "--probes", "generalization", "--out", str(out), "-q"]) == 0
    assert set(read_metrics(out)["model_id"]) == {run.name}
    assert main(["measure", str(run), "--probes", "nonsense", "--out", str(out)]) == 2
    assert "unknown probe 'nonsense'" in capsys.readouterr().err
    assert main(["measure", str(grid / "nowhere"), "--out", str(out)]) == 2


def test_report_builds_from_the_store_alone(grid, tmp_path):
    store = grid / "reports" / "results.h5"
    measure(grid / "models", out=store)
    alone = tmp_path / "copied"
    alone.mkdir()
    for name in ("results.h5", "study.json"):
        (alone / name).write_bytes((store.parent / name).read_bytes())
    assert main(["report", str(alone), "-q"]) == 0
    html = (alone / "report.html").read_text()
    for figure in ("curves_n_backgrounds", "decomposition_bars", "examples", "curves_complexity"):
        assert (alone / "figures" / f"{figure}.png").stat().st_size > 1000
        assert (alone / "figures" / f"{figure}.pdf").is_file()
        assert f"figures/{figure}.png" in html
    assert "tinystudy" in html and "Provenance" in html
    table = headline_numbers(read_metrics(alone / "results.h5"))
    assert set(table["background"]) == {"smooth", "natural"}
    assert table["spearman_n_vs_ood_removal"].between(-1, 1).all()
    assert (alone / "metrics.csv").is_file() and (alone / "headline.csv").is_file()
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_headline_spearman_matches_a_hand_computation():
    import pandas as pd

    rows = []
    for n, removal, psnr_bg in [(1, 0.9, 30.0), (4, 0.7, 31.0), (16, 0.5, 33.0), (64, 0.6, 34.0)]:
        rows += [{"model_id": f"m{n}", "probe": "decomposition", "family": "resnet", "background": "natural",
                  "n_backgrounds": n, "split": "ood", "metric": "removal_ratio", "value": removal},
                 {"model_id": f"m{n}", "probe": "decomposition", "family": "resnet", "background": "natural",
                  "n_backgrounds": n, "split": "id", "metric": "psnr_bg_region", "value": psnr_bg}]
    table = headline_numbers(pd.DataFrame(rows))
    assert table.loc[0, "spearman_n_vs_ood_removal"] == pytest.approx(-0.8)
    assert table.loc[0, "spearman_n_vs_bg_psnr"] == pytest.approx(1.0)
    assert table.loc[0, "ood_removal_fewest"] == 0.9 and table.loc[0, "ood_removal_most"] == 0.6


def test_demo_runs_end_to_end_in_a_fresh_folder(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "demo.toml"
    spec.write_text(SPEC.replace('"natural"]', '"natural"]').replace("n_backgrounds = [1, 2, 4]",
                                                                       "n_backgrounds = [1, 2, 3]"))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--spec", str(spec), "--workers", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Headline" in out and "report: reports/tinystudy/report.html" in out
    assert (tmp_path / "reports" / "tinystudy" / "report.html").is_file()
    assert json.loads((tmp_path / "trained_models" / "tinystudy" / "study.json").read_text())["name"] == "tinystudy"


def test_several_families_get_faceted_curves_and_a_ranking(tmp_path):
    spec = tmp_path / "fam.toml"
    spec.write_text(SPEC.replace('name = "tinystudy"', 'name = "fam"').replace(
        'background = ["smooth", "natural"]', 'family = ["resnet", "unet"]\nbackground = ["smooth"]').replace(
        "n_backgrounds = [1, 2, 4]", "n_backgrounds = [1, 2]"))
    assert run_grid(spec, tmp_path / "models", workers=2)["done"] == 4
    measure(tmp_path / "models", out=tmp_path / "rep" / "results.h5")
    build_report(tmp_path / "rep")
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "figures/curves_by_family.png" in html and "OOD rain removal by family" in html
    import pandas as pd

    ranking = pd.read_csv(tmp_path / "rep" / "family_ranking.csv")
    assert list(ranking["n_backgrounds"]) == [1, 2]
    assert {"resnet (rank)", "unet (rank)"} <= set(ranking.columns)
    assert sorted(ranking.loc[0, ["resnet (rank)", "unet (rank)"]]) in ([1, 2], [1, 1])
