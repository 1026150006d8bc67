"""The study-level `shortcut` score: the fixed rule on known inputs, ID-only, anchors, and end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_study

from probe.cli import main
from probe.errors import DataError
from probe.measure import measure
from probe.shortcut import (
    CEM_METRICS,
    PROBE_SET_SPLIT,
    SIGNS,
    WEIGHTS,
    Shortcut,
    indicators,
    probe_set_info,
    probe_set_sources,
    shortcut_scores,
)
from probe.store import read_metrics


def _rows(model: str, k: float, role: str = "") -> list[dict]:
    """Metric rows whose every indicator grows with ``k`` (k = how rain-driven the model is)."""
    base = {"model_id": model, "role": role, "params": "{}"}
    rows = [
        {"probe": "cka", "split": "id", "metric": "align_gap_deep", "value": 0.1 * k},
        {"probe": "attribution", "split": "id", "metric": "share_on_rain", "value": 0.5 + 0.05 * k,
         "objective": "removed", "window": "on"},
        {"probe": "attribution", "split": "id", "metric": "share_on_rain", "value": 0.99,  # off-window: unused
         "objective": "removed", "window": "off"},
        {"probe": "attribution", "split": "id", "metric": "share_on_rain", "value": 1.0 - 0.05 * k,  # other objective
         "objective": "lam", "window": "on"},
        {"probe": "decomposition", "split": "id", "metric": "corr_removed_layer", "value": 0.5 + 0.04 * k},
        {"probe": "decomposition", "split": "id", "metric": "corr_removed_background", "value": 0.3 - 0.02 * k},
        {"probe": "decomposition", "split": "clean", "metric": "removed_energy", "value": 1e-4 * 2**-k},
        {"probe": "decomposition", "split": "ood", "metric": "removal_ratio", "value": 0.5},
    ]
    for depth, ratio in [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0 + 0.2 * k)]:
        rows.append({"probe": "activations", "split": "id", "metric": "sensitivity_ratio", "value": ratio,
                     "depth": depth, "layer": f"l{depth}"})
    return [{**base, **r} for r in rows]


def _frame(ks: dict[str, float], anchors: dict[str, float] | None = None) -> pd.DataFrame:
    rows = [r for m, k in ks.items() for r in _rows(m, k)]
    rows += [r for m, k in (anchors or {}).items() for r in _rows(m, k, role="identity")]
    return pd.DataFrame(rows)


def test_score_orders_models_by_every_indicator_and_uses_the_fixed_rule():
    ks = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0}
    scores = shortcut_scores(_frame(ks))
    assert list(scores.sort_values("score").index) == ["a", "b", "c", "d", "e"]
    assert (scores["n_indicators"] == len(WEIGHTS)).all()
    # rule v2: the score is the weighted mean z; with the shipped weights, the attribution share's z
    weighted = sum(w * scores[f"z_{name}"] for name, w in WEIGHTS.items()) / sum(WEIGHTS.values())
    assert np.allclose(scores["score"], weighted)
    # diagnostics with data are still standardised; one without data (no `cem` rows here) is kept, all NaN
    measured = [name for name in SIGNS if name not in CEM_METRICS]
    assert all(scores[f"z_{name}"].notna().all() for name in measured)
    assert all(f"z_{name}" in scores and scores[f"z_{name}"].isna().all() for name in CEM_METRICS)
    # every indicator is linear in k here except the log ones, so z of the middle model is 0
    assert scores.loc["c", "score"] == pytest.approx(0.0, abs=1e-9)
    # the rule by hand for one indicator: robust z over the five models
    raw = indicators(_frame(ks))["residual_rain_vs_bg"]
    mad = 1.4826 * (raw - raw.median()).abs().median()
    assert scores.loc["e", "z_residual_rain_vs_bg"] == pytest.approx((raw["e"] - raw.median()) / mad)
    assert raw["a"] == pytest.approx(0.2) and indicators(_frame(ks))["attribution_on_rain"]["a"] == 0.5


def _cem_rows(ks: dict[str, float]) -> pd.DataFrame:
    """``cem`` rows (window ``on``, split ``id``) whose rain share grows and background dependence falls with k,
    plus rows that must be ignored (window ``off``, an OOD split)."""
    rows = []
    for m, k in ks.items():
        for split, window, share, bgd in (("id", "on", 0.2 + 0.1 * k, 1.0 - 0.2 * k), ("id", "off", 0.9, 0.0),
                                         ("ood", "on", 0.0, 5.0)):
            rows += [{"model_id": m, "role": "", "params": "{}", "probe": "cem", "split": split, "window": window,
                      "method": "cem", "metric": metric, "value": v}
                     for metric, v in (("rain_share", share), ("background_dependence", bgd),
                                       ("effect_reach", 8.0))]
    return pd.DataFrame(rows)


def test_cem_indicators_are_diagnostics_that_never_move_the_score():
    ks = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    plain = shortcut_scores(_frame(ks))
    cem = _cem_rows({m: k for m, k in ks.items() if m != "d"})  # "d" has no cem result
    with_cem = shortcut_scores(pd.concat([_frame(ks), cem], ignore_index=True))
    pd.testing.assert_series_equal(plain["score"], with_cem["score"])
    pd.testing.assert_series_equal(plain["n_indicators"], with_cem["n_indicators"])
    assert with_cem.loc["a", "cem_rain_share"] == pytest.approx(0.2)  # window on, split id only
    assert with_cem.loc["c", "cem_background_dependence"] == pytest.approx(0.6)
    assert np.isnan(with_cem.loc["d", "cem_rain_share"]) and np.isnan(with_cem.loc["d", "z_cem_rain_share"])
    # signed so that higher z = more shortcut: both grow with k (more rain share, less background dependence)
    for name in CEM_METRICS:
        z = with_cem[f"z_{name}"].dropna()
        assert list(z.sort_values().index) == ["a", "b", "c"]


def test_score_never_reads_ood_rows():
    frame = _frame({"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0})
    before = shortcut_scores(frame)["score"]
    shuffled = frame.copy()
    ood = shuffled["split"] == "ood"
    shuffled.loc[ood, "value"] = np.random.default_rng(0).random(int(ood.sum()))
    extra = frame[frame["split"] == "id"].assign(split="ood", value=123.0)  # OOD copies of every indicator
    after = shortcut_scores(pd.concat([shuffled, extra], ignore_index=True))["score"]
    pd.testing.assert_series_equal(before, after)


def test_anchors_are_scored_but_do_not_move_the_standardisation():
    ks = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    plain = shortcut_scores(_frame(ks))
    with_anchor = shortcut_scores(_frame(ks, anchors={"identity": 50.0}))
    pd.testing.assert_series_equal(plain["score"], with_anchor.loc[list(ks), "score"])
    assert with_anchor.loc["identity", "anchor"] and with_anchor.loc["identity", "score"] > plain["score"].max()


def test_a_model_without_the_weighted_indicator_gets_nan_not_a_number_from_diagnostics():
    frame = _frame({"a": 0.0, "b": 1.0, "c": 2.0})
    only_cka = frame[(frame["probe"] == "cka") | (frame["model_id"] != "a")]
    scores = shortcut_scores(only_cka)
    assert scores.loc["a", "n_indicators"] == 0 and np.isnan(scores.loc["a", "score"])
    assert np.isfinite(scores.loc["a", "z_cka_rain_alignment"]) and np.isfinite(scores.loc["b", "score"])


def test_probe_set_rows_win_over_own_id_rows_per_model():
    ks = {"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0}
    frame = _frame(ks)
    # a common probe set that reverses the order for every model but "d" (which has no probe-set rows)
    extra = pd.DataFrame([{"model_id": m, "role": "", "params": "{}", "probe": "attribution",
                           "split": PROBE_SET_SPLIT, "metric": "share_on_rain", "value": 1.0 - 0.1 * k,
                           "objective": "removed", "window": "on"} for m, k in ks.items() if m != "d"])
    raw = indicators(pd.concat([frame, extra], ignore_index=True))["attribution_on_rain"]
    assert raw["a"] == pytest.approx(1.0) and raw["c"] == pytest.approx(0.8)
    assert raw["d"] == pytest.approx(0.5 + 0.05 * 3.0)  # falls back to its own id rows


def test_probe_set_is_the_training_rain_on_every_source():
    config = {"data": {"background": "natural", "patch": 32},
              "degradation": {"type": "rain", "preset": "small"},
              "eval": {"n_images": 6, "seed": 3, "splits": {"id": {"type": "rain", "preset": "small"},
                                                            "ood": {"type": "rain", "preset": "large"}}}}
    records = [{"config": {"data": {"background": b, "background_options": o}}}
               for b, o in (("smooth", {}), ("dead_leaves", {"complexity": 0.3}), ("smooth", {"x": 1}))]
    sources = probe_set_sources(records)
    assert sources == {"smooth": {}, "dead_leaves": {"complexity": 0.3}}
    info = probe_set_info(config, sources)
    assert info["splits"] == {PROBE_SET_SPLIT: {"type": "rain", "preset": "small"}}  # never an OOD split
    assert info["background"] == "mixture" and info["background_options"]["sources"] == ["dead_leaves", "smooth"]
    assert info["background_options"]["options"] == {"dead_leaves": {"complexity": 0.3}}
    assert (info["n_images"], info["seed"], info["patch"]) == (6, 3, 32)
    from probe.probes.evaldata import eval_data_from_info

    data = eval_data_from_info(info)  # real images from both sources, same for every run
    assert list(data.splits) == [PROBE_SET_SPLIT] and data.splits[PROBE_SET_SPLIT].clean.shape == (6, 3, 32, 32)
    single = probe_set_info(config, {"natural": {}})
    assert single["background"] == "natural" and single["background_options"] == {}


SPEC = tiny_study()  # the suite's tiny study: decomposition + shortcut over n_backgrounds 1, 2, 4


def test_measure_scores_every_model_of_a_real_grid(tmp_path, capsys, trained_grid):
    grid = trained_grid(SPEC)
    store = tmp_path / "rep" / "results.h5"
    summary = measure(grid, out=store)
    assert summary["shortcut"] == 3
    df = read_metrics(store)
    score = df[(df["probe"] == "shortcut") & (df["metric"] == "score")]
    assert sorted(score["model_id"]) == sorted(df.loc[df["probe"] == "decomposition", "model_id"].unique())
    assert score["value"].notna().all() and score["n_backgrounds"].notna().all()  # model info kept
    z = df[(df["probe"] == "shortcut") & (df["metric"] == "z")]
    assert set(z["indicator"]) == set(SIGNS)
    # the score's attribution ran on the common probe set (training rain only) for every model
    on_set = df[(df["probe"] == "attribution") & (df["split"] == PROBE_SET_SPLIT)]
    assert set(on_set["model_id"]) == set(score["model_id"]) and set(df["split"]) >= {"id", "ood", PROBE_SET_SPLIT}
    # the stored score is the rule applied to the stored indicators
    ref = shortcut_scores(df[df["probe"] != "shortcut"])["score"]
    assert np.allclose(score.set_index("model_id")["value"].sort_index(), ref.sort_index())
    # measuring again replaces, never duplicates; the CLI runs it too
    assert main(["measure", str(grid), "--out", str(store), "--probes", "decomposition,shortcut",
                 "-q"]) == 0
    again = read_metrics(store)
    assert len(again[(again["probe"] == "shortcut") & (again["metric"] == "score")]) == 3
    with pytest.raises(DataError, match="study-level"):
        Shortcut().run(None, None)


def test_a_probe_set_that_cannot_be_built_is_a_recorded_failure_not_a_crash(tmp_path, monkeypatch, trained_grid):
    import probe.shortcut

    grid = trained_grid(SPEC)

    def broken(config, sources):
        raise FileNotFoundError("/data/gone: no such folder")

    monkeypatch.setattr(probe.shortcut, "probe_set_info", broken)
    summary = measure(grid, out=tmp_path / "rep" / "results.h5")
    failed = [f for f in summary["failed"] if f["probe"] == "shortcut (extra runs)"]
    assert len(failed) == 3 and "/data/gone" in failed[0]["cause"]
    df = read_metrics(tmp_path / "rep" / "results.h5")
    assert df.loc[df["probe"] == "decomposition", "model_id"].nunique() == 3  # the rest was measured
    assert PROBE_SET_SPLIT not in set(df["split"])


CEM_SPEC = tiny_study({"study.name": "cem_shortcut", "study.probes": ["decomposition", "shortcut", "cem"],
                       "study.probe_params": {"attribution": {"n_images": 2, "steps": 4},
                                              "cem": {"coarse": 1, "fine": 4}},
                       "base.eval.n_images": 2, "axes": {"n_backgrounds": [1, 4], "seed": [0, 1]}})


@pytest.mark.slow
def test_cem_indicators_enter_the_validation_of_a_real_grid_without_moving_the_score(tmp_path, trained_grid):
    from probe.analysis.validity import indicator_validity
    from probe.shortcut import measure_shortcut
    from probe.store import ResultStore

    grid = trained_grid(CEM_SPEC)
    store = tmp_path / "rep" / "results.h5"
    summary = measure(grid, out=store, probes=["decomposition", "shortcut", "cem", "attribution"],
                      anchors=["identity", "oracle"])
    # 4 trained models + the oracle; the identity removes nothing, so it has no attribution share and no score
    assert summary["shortcut"] == 5 and not summary["failed"], summary["failed"]
    df = read_metrics(store)
    # the anchors' cem rows are measured and the oracle's enter its shortcut indicators (its removal is the rain)
    cem = df[(df["probe"] == "cem") & (df["metric"] == "rain_share") & (df["split"] == "id")]
    assert set(cem["role"].fillna("").astype(str)) == {"", "identity", "oracle"}
    z = df[(df["probe"] == "shortcut") & (df["metric"] == "indicator") & (df["indicator"] == "cem_rain_share")]
    oracle = z[z["role"].fillna("").astype(str) == "oracle"]["value"]
    assert len(oracle) == 1 and oracle.iloc[0] == pytest.approx(1.0, abs=1e-3)
    score = df[(df["probe"] == "shortcut") & (df["metric"] == "score")].set_index("model_id")["value"]
    # the stored score is the rule on the indicators without any cem row: cem never moves it
    without = shortcut_scores(df[~df["probe"].isin(["shortcut", "cem"])])["score"]
    assert len(score) == 5 and np.allclose(score.sort_index(), without.reindex(score.index).sort_index())
    df = df[df["role"].fillna("").astype(str) == ""]  # the trained models (validation never reads anchors)
    table = indicator_validity(df).set_index("indicator")
    for name in CEM_METRICS:
        row = table.loc[name]
        assert row["weight"] == 0 and row["n_models"] == 4 and row["coverage"] == "4 of 4 models"
        rho, lo, hi = (row["spearman_z_vs_ood_removal"], row["spearman_z_vs_ood_removal_ci_low"],
                       row["spearman_z_vs_ood_removal_ci_high"])
        assert np.isfinite(rho) and lo <= rho <= hi and 0 < row["spearman_z_vs_ood_removal_p"] <= 1
    # a model without its cem result: NaN indicator, the validation says 3 of 4 models, the score stands
    rs = ResultStore(store, study=str(df["study"].iloc[0]))
    dropped = sorted(df["model_id"].unique())[0]  # a trained model
    with rs.transaction():
        rs.delete(dropped, "cem")
    assert measure_shortcut(rs) == 5
    again = read_metrics(store)
    z = again[(again["probe"] == "shortcut") & (again["metric"] == "z") & (again["indicator"] == "cem_rain_share")]
    assert np.isnan(z.set_index("model_id").loc[dropped, "value"])
    assert indicator_validity(again).set_index("indicator").loc["cem_rain_share", "coverage"] == "3 of 4 models"
    rescored = again[(again["probe"] == "shortcut") & (again["metric"] == "score")].set_index("model_id")["value"]
    assert np.allclose(rescored.sort_index(), score.sort_index())
