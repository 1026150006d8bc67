"""Report sections with uncertainty: headline CIs, effect sizes, shortcut validity, "How far to trust"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.grid.runner import run_grid
from probe.measure import measure
from probe.report.build import build_report
from probe.report.sections.effects import effect_sizes
from probe.report.sections.headline import headline_numbers, source_differences
from probe.report.sections.shortcut import score_validity
from probe.report.sections.trust import anchor_table
from probe.stats import spearman

SPEC = """
[study]
name = "ci_study"
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
type = "rain"
preset = "small"
[base.train]
iterations = 3
batch = 2
[base.eval]
n_images = 3
[base.eval.splits.id]
type = "rain"
preset = "small"
[base.eval.splits.ood]
type = "rain"
preset = "large"
[base.eval.splits.ood_b]
type = "rain"
preset = "medium"
[axes]
background = ["smooth", "natural"]
n_backgrounds = [1, 2, 4]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ci")
    (root / "s.toml").write_text(SPEC)
    assert run_grid(root / "s.toml", root / "models", workers=2)["done"] == 12
    measure(root / "models", out=root / "rep" / "results.h5")
    build_report(root / "rep")
    return root / "rep"


def _synthetic(seeds: int = 3, slope: float = -0.1) -> pd.DataFrame:
    """Decomposition rows of a study where OOD removal falls with log2 n on 'natural' only."""
    rng = np.random.default_rng(0)
    rows = []
    for bg, base in (("smooth", 0.5), ("natural", 0.1)):
        for n in (1, 16, 256):
            for s in range(seeds):
                mid = f"{bg}-{n}-{s}"
                info = {"model_id": mid, "probe": "decomposition", "family": "resnet", "background": bg,
                        "n_backgrounds": n, "seed": s}
                drop = slope * np.log2(n) / 8 if bg == "natural" else 0.0
                for split in ("ood", "ood_b"):
                    rows.append({**info, "split": split, "metric": "removal_ratio",
                                 "value": base + drop + rng.normal(0, 0.01)})
                rows.append({**info, "split": "id", "metric": "removal_ratio", "value": 0.9 + rng.normal(0, .01)})
                rows.append({**info, "split": "id", "metric": "psnr_bg_region", "value": 30 + np.log2(n) + s * .1})
    return pd.DataFrame(rows)


def test_headline_ci_and_p_on_a_known_trend():
    table = headline_numbers(_synthetic(), n_boot=500, n_perm=999).set_index(["background", "ood_split"])
    nat = table.loc[("natural", "ood")]
    assert nat["spearman_n_vs_ood_removal"] < -0.8
    assert nat["spearman_n_vs_ood_removal_ci_high"] < 0 and nat["spearman_n_vs_ood_removal_p"] < 0.01
    assert nat["seeds_per_n"] == "3" and nat["n_models"] == 9
    smooth = table.loc[("smooth", "ood")]  # no trend: the CI covers 0 and p is large
    assert smooth["spearman_n_vs_ood_removal_ci_low"] < 0 < smooth["spearman_n_vs_ood_removal_ci_high"]
    assert smooth["spearman_n_vs_ood_removal_p"] > 0.05
    # the point estimate is scipy's Spearman over models
    part = _synthetic().query("background == 'natural' and split == 'ood' and metric == 'removal_ratio'")
    assert nat["spearman_n_vs_ood_removal"] == pytest.approx(spearman(part["n_backgrounds"], part["value"]))
    gaps = source_differences(_synthetic(), n_boot=300, n_perm=999)
    row = gaps[(gaps["ood_split"] == "ood")].iloc[0]
    assert (row["source_a"], row["source_b"]) == ("natural", "smooth")
    assert row["difference_ci_high"] < 0 and row["difference_p"] < 0.01 and row["hedges_g"] < -2


def test_one_seed_per_cell_gives_no_ci():
    table = headline_numbers(_synthetic(seeds=1), n_boot=200, n_perm=99)
    assert table["spearman_n_vs_ood_removal_ci_low"].isna().all()
    assert (table["note"] != "").all()


def test_effect_sizes_attribute_variance_to_the_right_factor():
    table, formula = effect_sizes(_synthetic(), n_boot=100, n_perm=49)
    table = table.set_index("term")
    assert "C(background)" in formula and "C(split)" in formula
    assert table.loc["C(background)", "partial_eta_sq"] > 0.9
    assert table.loc["C(background)", "ci_low"] > 0.5 and table.loc["C(background)", "p_perm"] <= 0.05
    assert table.loc["C(split)", "partial_eta_sq"] > table.loc["np.log2(n_backgrounds)", "partial_eta_sq"] * 0


def test_anchor_table_marks_indicators_that_cannot_separate_identity_from_oracle():
    frame = _synthetic()
    anchors = []
    for role, removal, psnr in (("identity", 0.0, 30.0), ("oracle", 1.0, 30.0)):
        for split, metric, value in (("id", "removal_ratio", removal), ("ood", "removal_ratio", removal),
                                     ("id", "psnr_bg_region", psnr)):
            anchors.append({"model_id": f"anchor-{role}", "probe": "decomposition", "role": role,
                            "split": split, "metric": metric, "value": value})
    table = anchor_table(pd.concat([frame.assign(role=""), pd.DataFrame(anchors)], ignore_index=True))
    table = table.set_index(["indicator", "split"])
    assert table.loc[("ID rain removed", "id"), "informative"] == "yes"
    assert table.loc[("background PSNR (ID)", "id"), "informative"] == "NO"
    assert table.loc[("ID rain removed", "id"), "identity"] == 0.0
    assert anchor_table(frame).empty


def test_report_of_a_real_grid_has_every_uncertainty_section(report):
    html = (report / "report.html").read_text()
    for title in ("How far to trust these numbers", "Effect sizes", "Shortcut score: validated",
                  "95% CI"):
        assert title in html
    assert "were not measured for this study" in html  # no anchors in this grid: said plainly
    head = pd.read_csv(report / "headline.csv")
    assert {"spearman_n_vs_ood_removal_ci_low", "spearman_n_vs_ood_removal_p"} <= set(head.columns)
    assert set(head["ood_split"]) == {"ood", "ood_b"}
    assert (head["seeds_per_n"].astype(str) == "2").all()
    validity = pd.read_csv(report / "shortcut_validity.csv")
    assert set(validity["scope"]) == {"all models", "without natural", "without smooth"}
    assert validity["spearman_score_vs_ood_removal"].between(-1, 1).all()
    assert (report / "effect_sizes.csv").is_file() and (report / "figures" / "shortcut_validity.png").is_file()
    assert pd.read_csv(report / "replication.csv")["models (seeds)"].eq(2).all()
    assert len(score_validity(pd.read_csv(report / "metrics.csv"), n_boot=50, n_perm=49)) == 6
