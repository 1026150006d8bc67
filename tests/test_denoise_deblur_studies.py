"""Noise and blur studies end to end on tiny grids: measure (content decomposition rows), the study-level
shortcut score, and a report worded in the study's task, never in rain."""

from __future__ import annotations

import re

import numpy as np
import pytest

from probe.grid.runner import run_grid
from probe.measure import measure
from probe.report.build import build_sections, render
from probe.report.context import ReportContext
from probe.report.sections.headline import headline_numbers, readable
from probe.shortcut import shortcut_scores
from probe.store import read_metrics
from probe.tasks import task_of

SPEC = """
[study]
name = "{name}"
probes = ["decomposition", "shortcut"]
[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
patch = 24
[base.degradation]
{train}
[base.train]
iterations = 3
batch = 2
[base.eval]
n_images = 3
[base.eval.splits.id]
{train}
[base.eval.splits.ood]
{ood}
[axes]
n_backgrounds = [1, 2, 4]
"""

STUDIES = {
    "noise": ('type = "noise"\nsigma = [10, 25]', 'type = "noise_correlated"\nsigma = 20\ncorr = 1.5',
              "psnr_image", "denoising"),
    "blur": ('type = "blur"\nsigma = [0.8, 1.6]', 'type = "defocus"\nradius = 2.0', "psnr_flat", "deblurring"),
}


@pytest.fixture(scope="module", params=sorted(STUDIES))
def study(request, tmp_path_factory):
    kind = request.param
    train, ood, fidelity, word = STUDIES[kind]
    root = tmp_path_factory.mktemp(kind)
    (root / "s.toml").write_text(SPEC.format(name=f"tiny_{kind}", train=train, ood=ood))
    assert run_grid(root / "s.toml", root / "models", workers=1)["done"] == 3
    summary = measure(root / "models", out=root / "rep" / "results.h5", anchors=["identity", "oracle"])
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
