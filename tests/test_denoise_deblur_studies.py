"""Noise and blur studies end to end on tiny grids: measure (content decomposition rows), the study-level
shortcut score, and a report worded in the study's task, never in rain."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import tiny_study

from probe.measure import measure
from probe.report.build import build_sections, render
from probe.report.context import ReportContext
from probe.report.sections.headline import headline_numbers, readable
from probe.shortcut import shortcut_scores
from probe.store import read_metrics
from probe.tasks import task_of

STUDIES = {  # training (= id) degradation, OOD degradation, the task's fidelity metric, the task's word
    "noise": ({"type": "noise", "sigma": [10, 25]}, {"type": "noise_correlated", "sigma": 20, "corr": 1.5},
              "psnr_image", "denoising"),
    "blur": ({"type": "blur", "sigma": [0.8, 1.6]}, {"type": "defocus", "radius": 2.0}, "psnr_flat", "deblurring"),
}


@pytest.fixture(scope="module", params=sorted(STUDIES))
def study(request, tmp_path_factory, trained_grid):
    kind = request.param
    train, ood, fidelity, word = STUDIES[kind]
    root = tmp_path_factory.mktemp(kind)
    grid = trained_grid(tiny_study({"study.name": f"tiny_{kind}", "base.degradation": train,
                                    "base.eval.splits": {"id": train, "ood": ood}}))
    summary = measure(grid, out=root / "rep" / "results.h5", anchors=["identity", "oracle"])
    return kind, fidelity, word, root, summary


def test_measure_stores_the_declared_decomposition_and_a_finite_shortcut_score(study):
    kind, _, _, root, summary = study
    df = read_metrics(root / "rep" / "results.h5")
    dec = df[(df["probe"] == "decomposition") & (df["decomposition"].fillna("").astype(str) != "")]
    assert set(dec["decomposition"]) == {kind} and set(dec["split"]) == {"id", "ood"}
    assert task_of(df).decomposition == kind
    assert summary["shortcut"] >= 3
    score = df[(df["probe"] == "shortcut") & (df["metric"] == "score")]
    trained = score[score["n_backgrounds"].notna()]
    assert len(trained) == 3 and np.isfinite(trained["value"]).all()
    # the score's indicator (attribution to the degradation input, on the common probe set) and a diagnostic
    scores = shortcut_scores(df[df["probe"] != "shortcut"])
    assert (scores.loc[trained["model_id"], "n_indicators"] == 1).all()
    assert np.isfinite(scores.loc[trained["model_id"], "z_attribution_on_rain"]).all()
    assert np.isfinite(scores.loc[trained["model_id"], "z_residual_rain_vs_bg"]).all()
    assert set(df.loc[df["split"] == "probe_set", "probe"]) == {"attribution"}


def test_report_speaks_of_the_study_task_not_rain(study):
    kind, fidelity, word, root, _ = study
    ctx = ReportContext.load(root / "rep")
    names = ["headline"] + (["trust", "examples", "shortcut"] if kind == "noise" else ["decomposition_bars"])
    sections = build_sections(ctx, names)  # the slow figure-only sections (curves, effects) are left out
    assert [s.title for s in sections if "failed" in s.text] == []
    html = render(ctx, sections)
    table = headline_numbers(read_metrics(root / "rep" / "results.h5"), n_boot=50, n_perm=49)
    assert set(table["removal_metric"]) == {"removal_ratio" if kind == "noise" else "blur_removed_image"}
    assert (table["fidelity_metric"] == fidelity).all() and np.isfinite(table["spearman_n_vs_bg_psnr"]).all()
    assert any(kind in c or "PSNR" in c for c in readable(table, task_of(read_metrics(root / "rep" / "results.h5"))))
    assert word.capitalize() in html and f"unseen {kind}" in html
    # no user-facing sentence, title or caption of these sections speaks of rain
    prose = re.sub(r"<pre>.*?</pre>|<table.*?</table>", "", html, flags=re.S)
    words = re.sub(r"<[^>]+>", " ", prose)
    assert not re.search(r"\brain\b", words, flags=re.I), re.search(r".{80}\brain\b.{40}", words, flags=re.I | re.S)
