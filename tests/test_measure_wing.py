"""The measurement wing on a tiny two-source study: the plan, study probes through the registry, an external
network like for like on every source (its numbers equal measuring it on that source alone), its shortcut
reading, and every report section showing it. One shared grid (``trained_grid`` in conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_study

from probe.cli import main
from probe.measure import measure, plan_measure
from probe.probes import PROBES
from probe.probes.study import StudyProbe
from probe.records import EvalSpec, study_store_path
from probe.store import list_entries, read_metrics

#: a tiny two-source study with every probe: smooth and dead leaves backgrounds x n_backgrounds 1 and 4 = 4 tiny
#: ResNets, 4 evaluation images of 16 px, cheap probe settings (conftest's TINY_STUDY with these changes)
TWO_SOURCE = tiny_study({
    "study.name": "twosource",
    "study.probes": ["generalization", "decomposition", "activations", "cka", "ddr", "attribution", "shortcut"],
    "study.probe_params": {
        "attribution": {"method": "ig", "objective": "removed", "steps": 4, "n_images": 3},
        "activations": {"n_images": 3, "batch_size": 3, "pixels_per_class": 8},
        "cka": {"n_images": 4, "batch_size": 4},
        "ddr": {"n_backgrounds": 3, "degradations": [{"type": "rain", "preset": "small"},
                                                     {"type": "rain", "preset": "large"}]}},
    "base.data.patch": 16,
    "base.eval.n_images": 4,
    "axes": {"background": ["smooth", "dead_leaves"], "n_backgrounds": [1, 4]},
})

pytestmark = pytest.mark.slow
ARCHS = Path(__file__).parent / "external_archs"
ARCH = f"{ARCHS / 'nets.py'}:MultiStage"


@pytest.fixture(scope="module")
def wing(trained_grid, tmp_path_factory) -> dict:
    grid = trained_grid(TWO_SOURCE)
    root = tmp_path_factory.mktemp("wing")
    store = root / "rep" / "results.h5"
    sys.path.insert(0, str(ARCHS))
    try:
        import nets
    finally:
        sys.path.remove(str(ARCHS))
    torch.manual_seed(0)
    torch.save(nets.MultiStage(width=8).state_dict(), root / "mynet.pth")
    # the README's "Diagnose your own network": measure the grid, then your network beside it, then report
    assert main(["measure", str(grid), "--out", str(store), "-q"]) == 0
    before = read_metrics(store)
    assert main(["measure", str(root / "mynet.pth"), "--arch", ARCH, "--arch-kwargs", '{"width": 8}',
                 "--out", str(store), "-q"]) == 0
    assert main(["report", str(store.parent), "-q"]) == 0
    return {"grid": grid, "root": root, "store": store, "before": before, "after": read_metrics(store)}


def test_a_plan_for_a_grid_with_anchors_and_for_an_external_network(wing, tmp_path):
    out = tmp_path / "planned" / "results.h5"
    plan, store, _ = plan_measure(wing["grid"], out=out, anchors=["identity", "oracle"])
    kinds = [e.kind for e in plan.entries]
    assert kinds.count("grid") == 4 and kinds.count("anchor") == 4  # 2 anchors x 2 sources' evaluation sets
    assert [p.name for p in plan.probes] == ["generalization", "decomposition", "activations", "cka", "ddr",
                                             "attribution"]
    assert sorted(p.name for p in plan.study_probes) == ["cka_models", "shortcut"]  # cka brings cka_models
    assert len(plan.rows()) == 8 * 6 + 2 and plan.size() == 48 and store == out and not out.exists()
    grid_evals = {json.dumps(e.evals[0].info, sort_keys=True) for e in plan.entries if e.kind == "grid"}
    ext, _, _ = plan_measure(wing["root"] / "mynet.pth", out=wing["store"], arch=ARCH, arch_kwargs={"width": 8})
    (entry,) = ext.entries
    assert entry.kind == "external" and entry.info["kind"] == "external"
    assert {json.dumps(d.info, sort_keys=True) for d in entry.evals} == grid_evals  # every source, like for like
    assert [p.name for p in ext.study_probes] == ["shortcut"]  # cka_models reads grid models only


class Census(StudyProbe):
    """A test study probe: counts the entries per kind and stores nothing."""

    name = "census"
    defaults = {}
    kinds = ("grid", "anchor")

    def run(self, entries, store=None, context=None):
        if self.per_model_call(entries, store):
            return super().run(entries)
        return {"study": context.name, **{k: sum(e.kind == k for e in entries) for k in self.kinds}}


class Broken(StudyProbe):
    name = "broken"
    defaults = {}

    def run(self, entries, store=None, context=None):
        raise RuntimeError("no luck")


def test_a_study_probe_is_a_registry_entry_run_by_measure(wing, tmp_path):
    PROBES.register("census", overwrite=True)(Census)
    PROBES.register("broken", overwrite=True)(Broken)
    try:
        summary = measure(wing["grid"], probes=["generalization", "census", "broken"], out=tmp_path / "r.h5",
                          anchors=["identity"])
    finally:
        PROBES._loaded.pop("census"), PROBES._loaded.pop("broken")
    assert summary["census"] == {"study": "twosource", "grid": 4, "anchor": 2}
    assert summary["failed"] == [{"model": "twosource", "probe": "broken", "cause": "RuntimeError: no luck"}]
    assert read_metrics(tmp_path / "r.h5").query("probe == 'generalization'")["model_id"].nunique() == 6
    with pytest.raises(Exception, match="study-level"):
        PROBES.get("cka_models")().run(None)


def test_study_level_results_live_in_their_own_store(wing):
    models = set(list_entries(wing["store"])["model_id"])
    assert "_study" not in models and "twosource" not in models
    study = list_entries(study_store_path(wing["store"]))
    assert list(study["model_id"]) == ["twosource"] and list(study["probe"]) == ["cka_models"]


def test_external_per_source_numbers_equal_measuring_it_on_that_source_alone(wing):
    from probe.models.checkpoint import load_model
    from probe.probes.evaldata import eval_data_from_info

    df = wing["after"]
    mine = df[(df["model_id"] == "mynet") & (df["probe"] == "generalization")]
    evals = sorted(set(mine["eval"]))
    assert [json.loads(e)["background"] for e in evals] == ["dead_leaves", "smooth"]
    model = load_model(wing["root"] / "mynet.pth", arch=ARCH, arch_kwargs={"width": 8})
    for eval_json in evals:
        spec = EvalSpec.from_dict(json.loads(eval_json)).to_dict()  # the stored description, minus its digest
        alone = PROBES.get("generalization")().run(model, eval_data_from_info(spec))
        for row in alone.metrics:
            stored = mine[(mine["eval"] == eval_json) & (mine["split"] == row["split"])
                          & (mine["metric"] == row["metric"])]["value"]
            np.testing.assert_allclose(stored.to_numpy(), [row["value"]], rtol=1e-6, equal_nan=True)
    import pandas as pd

    table = pd.read_csv(wing["store"].parent / "external_models.csv")
    for source in ("smooth", "dead_leaves"):
        rows = table[table["source"] == source]
        assert set(rows["kind"]) == {"external", "grid: fewest backgrounds", "grid: most backgrounds"}
        assert set(rows.loc[rows["kind"] == "external", "model"]) == {"mynet"}
        ref = rows[rows["kind"] == "grid: fewest backgrounds"]
        assert set(ref["model"]) == {"resnet (grid, n_backgrounds=1)"}


def test_the_shortcut_reading_places_the_network_without_moving_the_grid(wing):
    def scores(frame):
        s = frame[(frame["probe"] == "shortcut") & (frame["metric"] == "score")]
        return s.set_index("model_id")["value"].sort_index()

    grid_before, after = scores(wing["before"]), scores(wing["after"])
    assert len(grid_before) == 4
    np.testing.assert_allclose(after.loc[grid_before.index], grid_before)  # the grid's scores did not move
    read = wing["after"].query("model_id == 'mynet' and probe == 'shortcut' and metric.str.startswith('percentile')")
    values = read.set_index("metric")["value"]
    assert 0 <= values["percentile_lo"] <= values["percentile_hi"] <= 100 and 0 <= values["percentile"] <= 100
    assert read["verdict"].iloc[0] and "bootstrap over 3 images" in read["ci"].iloc[0]  # attribution n_images = 3
    assert "Your networks on the grid&#x27;s distribution" in (wing["store"].parent / "report.html").read_text()
    assert "mynet" in (wing["store"].parent / "shortcut_readings.csv").read_text()


def test_every_section_shows_the_external_network(wing):
    from probe.report.context import ReportContext
    from probe.report.sections import SECTIONS

    ctx = ReportContext.load(wing["store"].parent)
    found = {}
    for name in ("headline", "shortcut", "families", "representation", "attribution"):
        section = SECTIONS.get(name)(ctx)
        found[name] = {t.name for t in section.tables if t.frame.astype(str).apply(
            lambda c: c.str.contains("mynet")).any().any()}
    assert found == {"headline": {"external_models", "external_outputs"},
                     "shortcut": {"shortcut_scores", "shortcut_readings"}, "families": {"family_overview"},
                     "representation": {"representation_external"},
                     "attribution": {"attribution_external", "attribution_faithfulness"}}
    headline = {t.name: t.frame for t in SECTIONS.get("headline")(ctx).tables}
    said = headline["external_outputs"].iloc[0]["measured output (and why)"]
    assert "output" in said and len(headline["external_outputs"]) == 1  # which output, and why, in words
    att = next(t for t in SECTIONS.get("attribution")(ctx).tables if t.name == "attribution_external").frame
    mine = att[att["kind"] == "external"]
    assert {"smooth", "dead_leaves"} <= set(mine["source"]) and mine["diffusion_index"].notna().all()
    assert (att["kind"] != "external").any()  # the grid's references of each source beside it
    rep = next(t for t in SECTIONS.get("representation")(ctx).tables if t.name == "representation_external").frame
    assert set(rep.loc[rep["model"] == "yours: mynet", "background source"]) == {"smooth", "dead_leaves"}
    # figures: the network is drawn in each source's panel, on a relative-depth axis, with no panel of its own
    from probe.report.sections._representation_data import RepresentationData

    d = RepresentationData(ctx)
    cka = d.metrics("cka")
    assert set(cka.loc[cka["external"], "group"]) == set(d.groups("cka")) == {"smooth", "dead_leaves"}
    assert cka["rel_depth"].between(0, 1).all() and cka.loc[cka["external"], "rel_depth"].max() == 1.0
    from probe.analysis.external import external_rows

    assert set(external_rows(ctx.metrics).query("probe == 'decomposition'")["source"]) == {"smooth", "dead_leaves"}
