"""Report sections with uncertainty: headline CIs, effect sizes, shortcut validity, "How far to trust"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_study

from probe.measure import measure
from probe.report.build import build_report
from probe.report.sections.effects import effect_sizes
from probe.report.sections.headline import headline_numbers, source_differences
from probe.report.sections.shortcut import score_validity
from probe.report.sections.trust import anchor_table
from probe.stats import spearman

SPEC = tiny_study({"study.name": "ci_study",
                   "base.eval.splits.ood_b": {"type": "rain", "preset": "medium"},
                   "axes": {"background": ["natural"], "n_backgrounds": [1, 2, 4], "seed": [0, 1]}})


@pytest.fixture(scope="module")
def report(tmp_path_factory, trained_grid) -> Path:
    root = tmp_path_factory.mktemp("ci")
    grid = trained_grid(SPEC, workers=2)
    assert len([p for p in grid.iterdir() if p.is_dir()]) == 6
    measure(grid, out=root / "rep" / "results.h5")
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
    from probe.report.sections.headline import verdict

    table = headline_numbers(_synthetic(seeds=1), n_boot=200, n_perm=99)
    assert table["spearman_n_vs_ood_removal_ci_low"].isna().all()
    assert (table["note"] != "").all() and "one model per cell" in verdict(table)
    two_n = headline_numbers(_synthetic().query("n_backgrounds != 256"), n_boot=50, n_perm=49)
    assert two_n["spearman_n_vs_ood_removal"].notna().all()  # two values of n with seeds: a rank correlation
    few = _synthetic(seeds=1).query("n_backgrounds != 256")
    assert "fewer than 3 models" in verdict(headline_numbers(few, n_boot=50, n_perm=49))


def test_effect_sizes_attribute_variance_to_the_right_factor():
    as_objects = _synthetic().astype({"n_backgrounds": object})  # as read from a store with missing values
    assert not effect_sizes(as_objects, n_boot=20, n_perm=9)[0].empty
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
            anchors.append({"model_id": f"anchor-{role}", "probe": "decomposition", "role": "anchor",
                            "anchor": role, "background": "natural", "split": split, "metric": metric,
                            "value": value})
    table = anchor_table(pd.concat([frame.assign(role=""), pd.DataFrame(anchors)], ignore_index=True))
    table = table.set_index(["indicator", "split", "background"])
    assert table.loc[("ID rain removed", "id", "natural"), "informative"] == "yes"
    assert table.loc[("background PSNR (ID)", "id", "natural"), "informative"] == "NO"
    assert table.loc[("ID rain removed", "id", "natural"), "identity"] == 0.0
    assert table.loc[("ID rain removed", "id", "natural"), "trained max"] > 0.85  # natural models only
    assert ("ID rain removed", "id", "smooth") not in table.index  # no anchor measured on smooth
    assert anchor_table(frame).empty


def test_report_separation_rule_is_the_anchor_modules_rule():
    from probe.anchors import separates as reference
    from probe.report.sections.trust import separates

    for a, b in [(0.0, 1.0), (1.0, 1.01), (np.nan, 1.0), (np.nan, np.nan), (0.0, 0.0), (1e-4, 3e-4), (-1, 1)]:
        assert separates(a, b) == reference(a, b)


@pytest.mark.slow  # trains, measures and reports a 6-model grid (~25 s on 2 cores)
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
    assert set(validity["scope"]) == {"all models"} and set(validity["ood_split"]) == {"ood", "ood_b"}
    assert validity["spearman_score_vs_ood_removal"].between(-1, 1).all()
    assert (report / "effect_sizes.csv").is_file() and (report / "figures" / "shortcut_validity.png").is_file()
    assert pd.read_csv(report / "replication.csv")["models (seeds)"].eq(2).all()
    assert len(score_validity(pd.read_csv(report / "metrics.csv"), n_boot=50, n_perm=49)) == 2


def test_score_validity_over_all_models_and_leaving_each_source_out():
    frame = _synthetic()
    models = frame.drop_duplicates("model_id")
    ood = frame[(frame["split"] == "ood") & (frame["metric"] == "removal_ratio")].set_index("model_id")["value"]
    rows = [{"model_id": m, "probe": "shortcut", "split": "id", "metric": "score", "value": -10 * ood[m] + 0.01 * i,
             "background": models.set_index("model_id").loc[m, "background"],
             "n_backgrounds": models.set_index("model_id").loc[m, "n_backgrounds"]}
            for i, m in enumerate(models["model_id"])]
    table = score_validity(pd.concat([frame, pd.DataFrame(rows)], ignore_index=True), n_boot=200, n_perm=199)
    table = table.set_index(["ood_split", "scope"])
    assert set(table.index.get_level_values("scope")) == {"all models", "without natural", "without smooth"}
    best = table.loc[("ood", "all models")]
    assert best["spearman_score_vs_ood_removal"] < -0.95 and best["meets_target"]
    assert best["spearman_score_vs_ood_removal_ci_high"] < 0 and best["n_models"] == 18
    assert table.loc[("ood", "without smooth"), "n_models"] == 9
    from probe.report.sections.shortcut import validity_text

    assert "meets the target" in validity_text(table.reset_index())
    bad = score_validity(pd.concat([frame, pd.DataFrame(rows).assign(value=lambda d: -d["value"])]),
                         n_boot=100, n_perm=99)
    assert not bad["meets_target"].any() and "FAILS" in validity_text(bad)
    worst = bad[(bad["ood_split"] == "ood") & (bad["scope"] == "all models")]
    assert "CI includes 0" not in validity_text(worst)  # rho = +1 with a CI far from 0: failing, not uncertain


def test_every_indicator_is_validated_beside_the_score():
    from probe.report.sections.shortcut import indicator_validity

    frame = _synthetic()
    models = frame.drop_duplicates("model_id").set_index("model_id")
    ood = frame[(frame["split"] == "ood") & (frame["metric"] == "removal_ratio")].set_index("model_id")["value"]
    rows = []
    for i, m in enumerate(models.index):
        info = {"model_id": m, "probe": "shortcut", "split": "id", "background": models.loc[m, "background"],
                "n_backgrounds": models.loc[m, "n_backgrounds"]}
        rows += [{**info, "metric": "score", "value": -ood[m]},
                 {**info, "metric": "z", "indicator": "attribution_on_rain", "value": -ood[m] + 1e-3 * i},
                 {**info, "metric": "z", "indicator": "clean_change", "value": ood[m]}]  # the wrong way round
    table = indicator_validity(pd.concat([frame, pd.DataFrame(rows)], ignore_index=True), n_boot=100, n_perm=99)
    table = table.set_index(["ood_split", "indicator"])
    good, wrong = table.loc[("ood", "attribution_on_rain")], table.loc[("ood", "clean_change")]
    assert good["spearman_z_vs_ood_removal"] < -0.95 and good["weight"] == 1.0 and good["n_models"] == 18
    assert wrong["spearman_z_vs_ood_removal"] == pytest.approx(1.0) and wrong["weight"] == 0.0


def test_anchors_are_kept_out_of_every_figure_but_shown_in_the_trust_section(tmp_path):
    from probe.report.context import ReportContext, split_anchors
    from probe.report.sections.trust import trust

    frame = _synthetic().assign(role="")
    anchor_rows = pd.DataFrame([{"model_id": f"anchor-{a}-x", "probe": "decomposition", "role": "anchor", "anchor": a,
                                 "background": "natural", "n_backgrounds": 1 if a == "single" else np.nan,
                                 "split": "id", "metric": "removal_ratio", "value": v}
                                for a, v in (("identity", 0.0), ("oracle", 1.0), ("single", 0.7))])
    trained, anchors = split_anchors(pd.concat([frame, anchor_rows], ignore_index=True))
    assert not trained["model_id"].str.startswith("anchor").any() and len(anchors) == 3
    assert headline_numbers(trained, n_boot=50, n_perm=49).equals(headline_numbers(frame, n_boot=50, n_perm=49))
    ctx = ReportContext(directory=tmp_path, store=tmp_path / "results.h5", metrics=trained, anchors=anchors)
    section = trust(ctx)
    table = next(t.frame for t in section.tables if t.name == "anchors")
    row = table[(table["indicator"] == "ID rain removed") & (table["background"] == "natural")].iloc[0]
    assert (row["identity"], row["oracle"], row["single"], row["informative"]) == (0.0, 1.0, 0.7, "yes")
    assert "3 seed(s) per cell" in section.text and "Uninformative" not in section.text


def test_complexity_headline_ranks_models_by_measured_background_complexity():
    from probe.report.sections.headline import complexity_by_measure, complexity_numbers, complexity_verdict

    frame = _synthetic()  # smooth removes 0.5 of OOD rain, natural 0.1 (and less with n)
    bpp = {"smooth": 4.0, "natural": 11.0}
    frame["complexity_png_bpp"] = frame["background"].map(bpp) + np.log2(frame["n_backgrounds"]) / 100
    frame["complexity_entropy"] = -frame["complexity_png_bpp"]  # a measure that orders them the other way
    table = complexity_numbers(frame, n_boot=300, n_perm=999)
    assert set(table["ood_split"]) == {"ood", "ood_b"} and (table["n_models"] == 18).all()
    row = table.set_index("ood_split").loc["ood"]
    x = frame[(frame["split"] == "ood")].groupby("model_id").agg(c=("complexity_png_bpp", "first"),
                                                                  v=("value", "mean"))
    assert row["spearman_complexity_vs_ood_removal"] == pytest.approx(spearman(x["c"], x["v"]))
    assert row["spearman_complexity_vs_ood_removal_ci_high"] < 0 and row["spearman_complexity_vs_ood_removal_p"] < 0.01
    assert "HOLDS" in complexity_verdict(table) and "does NOT" not in complexity_verdict(table)
    both = complexity_by_measure(frame, n_boot=100, n_perm=99).set_index(["measure", "ood_split"])
    flipped = both.loc[("complexity_entropy", "ood"), "spearman_complexity_vs_ood_removal"]
    assert flipped == pytest.approx(-row["spearman_complexity_vs_ood_removal"])
    assert "does NOT hold" in complexity_verdict(both.reset_index().query("measure == 'complexity_entropy'"))
    assert complexity_numbers(frame.drop(columns=["complexity_png_bpp"])).empty
