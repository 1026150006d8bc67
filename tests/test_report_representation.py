"""Representation figures in `probe report`, and the study-level model × model CKA, on a tiny real grid."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from conftest import tiny_study

from probe.cross_models import PROBE_NAME, measure_cross_model_cka
from probe.errors import ConfigError
from probe.measure import measure
from probe.probes.base import ProbeResult
from probe.records import study_store_path
from probe.report.build import build_report
from probe.report.context import ReportContext
from probe.report.sections import SECTIONS
from probe.store import ResultStore, list_entries, read_array

SPEC = tiny_study({
    "study.name": "reprgrid",
    "study.probes": ["generalization", "decomposition", "activations", "cka", "ddr"],
    "study.probe_params": {
        "activations": {"n_images": 4, "batch_size": 4, "pixels_per_class": 8},
        "cka": {"n_images": 4, "batch_size": 4},
        "ddr": {"n_backgrounds": 3, "degradations": [{"type": "rain", "preset": "small"},
                                                     {"type": "rain", "preset": "large"},
                                                     {"type": "noise", "preset": "medium"}]}},
    "base.data": {"background": "smooth", "patch": 16}, "base.eval.n_images": 4, "base.eval.patch": 24,
    "axes.n_backgrounds": [1, 2]})

FIGURES = ["representation_layer_cka", "representation_alignment", "representation_activations",
           "representation_ddr_scatter", "representation_vs_n", "representation_model_cka"]
RUN_IDS = ["n_backgrounds-1", "n_backgrounds-2"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, trained_grid) -> dict:
    root = trained_grid(SPEC).parent  # the shared grid is root / "models" (read-only)
    store = tmp_path_factory.mktemp("repr") / "report" / "results.h5"
    summary = measure(root / "models", out=store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html = build_report(store.parent)
    return {"root": root, "store": store, "summary": summary, "html": html.read_text(encoding="utf-8"),
            "warnings": [str(w.message) for w in caught]}


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_measure_writes_the_study_level_cross_model_cka(study):
    summary, store = study["summary"], study["store"]
    assert summary["computed"] == 2 * 5 and summary["cka_models"]["computed"] is True
    study_store = study_store_path(store)
    assert set(list_entries(store)["probe"]) == {"generalization", "decomposition", "activations", "cka", "ddr"}
    arrays = {name for names in list_entries(study_store).query("model_id == 'reprgrid'")["arrays"] for name in names}
    assert arrays == {"cka_id", "cka_ood"}
    layer_names = list(read_array(store, RUN_IDS[0], "cka", "layer_cka").coords["layer_a"].values)
    for split in ("id", "ood"):
        cka = read_array(study_store, "reprgrid", PROBE_NAME, f"cka_{split}")
        assert cka.dims == ("model_a", "model_b", "layer")
        assert list(cka.coords["model_a"].values) == RUN_IDS == list(cka.coords["model_b"].values)
        assert list(cka.coords["layer"].values) == layer_names and cka.attrs["match"] == "name"
        values = cka.values
        assert np.isfinite(values).all()
        np.testing.assert_allclose(values[0, 0], 1.0, atol=1e-6)
        np.testing.assert_allclose(values[1, 1], 1.0, atol=1e-6)
        np.testing.assert_allclose(values, values.transpose(1, 0, 2), atol=1e-9)
        assert (values <= 1 + 1e-6).all() and (values >= -1).all()
    # the study's results are not a model: invisible to read_metrics and to every section
    assert "reprgrid" not in set(ReportContext.load(store.parent).metrics["model_id"])


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_measure_again_skips_and_force_recomputes(study):
    again = measure(study["root"] / "models", out=study["store"])
    assert again["computed"] == 0 and again["cka_models"]["computed"] is False
    runs = {rid: study["root"] / "models" / rid for rid in RUN_IDS}
    params = {"n_images": 4, "batch_size": 4}
    store = ResultStore(study["store"])
    assert measure_cross_model_cka(runs, store, params=params, study="reprgrid") is False
    assert measure_cross_model_cka(runs, store, params=params, splits=["ood"], force=True, study="reprgrid") is True
    entries = list_entries(study_store_path(study["store"])).query("model_id == 'reprgrid'")
    assert len(entries) == 1 and entries.iloc[0]["arrays"] == ["cka_ood"]  # the older comparison is replaced
    measure_cross_model_cka(runs, store, params=params, study="reprgrid")  # back to the fixture's state (id and ood)
    with pytest.raises(ConfigError, match="at least 2"):
        measure_cross_model_cka({RUN_IDS[0]: runs[RUN_IDS[0]]}, store)


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_report_has_every_representation_figure(study):
    figures, html = study["store"].parent / "figures", study["html"]
    for name in FIGURES:
        png, pdf = figures / f"{name}.png", figures / f"{name}.pdf"
        assert png.stat().st_size > 5000, name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
        assert f"figures/{name}.png" in html and f"figures/{name}.pdf" in html
    assert "Representations: content or rain?" in html
    assert "Representation indicators (deep layers" in html
    summary = (study["store"].parent / "representation_summary.csv").read_text()
    assert summary.count("\n") == 3  # header + n_backgrounds 1 and 2


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_other_sections_still_render(study):
    html = study["html"]
    assert not [w for w in study["warnings"] if "section" in w or "figure" in w], study["warnings"]
    assert "section failed" not in html
    for title in ("Headline", "Complexity vs generalization", "ID vs OOD decomposition", "Examples"):
        assert f"<h2>{title}</h2>" in html
    figures = study["store"].parent / "figures"
    for name in ("curves_n_backgrounds", "decomposition_bars", "examples"):
        assert (figures / f"{name}.png").is_file()
    # ddr's pooled split "all" is not a test split: the examples still show the OOD split
    assert ReportContext.load(study["store"].parent).ood_splits() == ["ood"]


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_an_old_stores_pseudo_model_is_read_and_filtered_out(study, tmp_path):
    """Stores written before the study store kept the model x model CKA under the pseudo model "_study":
    the report still draws it, and its rows are never a model."""
    legacy = "_study"
    shutil.copyfile(study["store"], tmp_path / "results.h5")
    entry = list_entries(study_store_path(study["store"])).iloc[-1]
    arrays = {n: read_array(study_store_path(study["store"]), "reprgrid", PROBE_NAME, n) for n in entry["arrays"]}
    ResultStore(tmp_path / "results.h5").write(legacy, {"kind": "study"}, PROBE_NAME, entry["params"],
                                               ProbeResult(arrays=arrays), eval_info=json.loads(entry["eval"]))
    result = ProbeResult(metrics=[{"split": "ood", "metric": "removal_ratio", "value": 9.0}])
    ResultStore(tmp_path / "results.h5").write(legacy, {"kind": "study"}, "decomposition", {}, result)
    ctx = ReportContext.load(tmp_path)
    section = SECTIONS.get("representation")(ctx)
    assert any(f.name == "representation_model_cka" for f in section.figures)
    assert legacy not in set(ctx.metrics["model_id"]) and set(ctx.metrics["model_id"]) == set(RUN_IDS)
    headline = SECTIONS.get("headline")(ctx)
    assert headline is not None
    every_number = next(t for t in headline.tables if t.name == "headline")
    assert every_number.frame["n_models"].tolist() == [2]


def test_representation_is_skipped_without_its_probes(tmp_path):
    result = ProbeResult(metrics=[{"split": "ood", "metric": "psnr", "value": 20.0}])
    ResultStore(tmp_path / "results.h5").write("m0", {"family": "resnet", "n_backgrounds": 1}, "generalization",
                                               {}, result)
    assert SECTIONS.get("representation")(ReportContext.load(tmp_path)) is None


@pytest.mark.slow  # the module's grid: 2 models × 5 probes, measured and reported (~15 s)
def test_measure_cross_model_cka_mixed_families_matches_by_depth(study, tmp_path):
    """A run of another family: the layers are matched at relative depth (labels depth0…)."""
    from probe.models import build
    from probe.models.checkpoint import save_weights

    src = study["root"] / "models" / RUN_IDS[0]
    other = tmp_path / "unet-run"
    other.mkdir()
    record = json.loads((src / "run.json").read_text())
    model = build("unet", size="tiny")
    record["model"] = model.spec
    record["weights_sha256"] = save_weights(model, other / "model.safetensors")
    (other / "run.json").write_text(json.dumps(record))
    runs = {RUN_IDS[0]: src, "unet": other}
    assert measure_cross_model_cka(runs, tmp_path / "results.h5", params={"n_images": 4, "batch_size": 4},
                                   splits=["ood"], study="mixed") is True
    cka = read_array(study_store_path(tmp_path / "results.h5"), "mixed", PROBE_NAME, "cka_ood")
    assert cka.attrs["match"] == "depth" and str(cka.coords["layer"].values[0]) == "depth0"
    np.testing.assert_allclose(np.diagonal(cka.values, axis1=0, axis2=1), 1.0, atol=1e-6)
