"""The n-trend analysis (probe.analysis.ntrend) on per-model frames of known shape, and the shipped study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analysis.ntrend import ntrend_curve, ntrend_numbers, turning_point

ROOT = Path(__file__).resolve().parent.parent
NS = np.array([4, 16, 64, 256, 1024])


def _models(means, seeds=4, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    n = np.repeat(NS[: len(means)], seeds)
    values = np.repeat(means, seeds) + rng.normal(0, noise, len(n))
    return n, values


def test_curve_means_and_cis_cover_the_truth():
    n, v = _models([0.4, 0.3, 0.2, 0.1, 0.05], seeds=6, noise=0.02)
    curve = ntrend_curve(n, v)
    assert list(curve["n"]) == list(NS) and list(curve["models"]) == [6] * 5
    for row, truth in zip(curve.itertuples(), [0.4, 0.3, 0.2, 0.1, 0.05]):
        assert row.ci_low <= row.mean <= row.ci_high
        assert abs(row.mean - truth) < 0.03 and row.ci_high - row.ci_low < 0.06


@pytest.mark.parametrize("means, shape, peak", [
    ([0.40, 0.30, 0.20, 0.10, 0.05], "falls", 4),      # the papers' direction
    ([0.05, 0.10, 0.20, 0.30, 0.40], "rises", 1024),   # reversed
    ([0.10, 0.30, 0.40, 0.30, 0.10], "turns", 64),     # rises, then falls after n = 64
])
def test_turning_point_reads_the_shape(means, shape, peak):
    n, v = _models(means)
    tp = turning_point(n, v)
    assert tp["shape"] == shape and tp["n_peak"] == peak
    assert tp["n_peak_ci_low"] <= peak <= tp["n_peak_ci_high"]
    assert tp["change"] == pytest.approx(means[-1] - means[0], abs=0.02)
    assert tp["change_ci_low"] <= tp["change"] <= tp["change_ci_high"]


def test_flat_noise_is_flat_and_its_peak_is_uncertain():
    n, v = _models([0.2] * 5, seeds=3, noise=0.05, seed=3)
    tp = turning_point(n, v)
    assert tp["shape"] == "flat"
    assert tp["change_ci_low"] < 0 < tp["change_ci_high"]
    assert tp["n_peak_ci_high"] / tp["n_peak_ci_low"] >= 16  # the peak could be almost anywhere


def test_one_seed_gives_no_ci():
    tp = turning_point(NS, [0.4, 0.3, 0.2, 0.1, 0.05])
    assert tp["shape"] == "n/a" and tp["n_peak"] == 4 and np.isnan(tp["fall_ci_low"])
    full = turning_point(*_models([0.4, 0.3, 0.2, 0.1, 0.05]))
    assert set(tp) == set(full)  # the same columns with or without CIs (the report's table reads them all)


def _metrics(removal, fidelity, seeds=3):
    """Tidy store rows: decomposition removal on ood, background PSNR on id, plus an anchor that must be ignored."""
    rows = []
    for source, (rem, fid) in {"smooth": (removal, fidelity), "dead_leaves": (removal[::-1], fidelity)}.items():
        for i, n in enumerate(NS):
            for s in range(seeds):
                mid = f"{source}-{n}-{s}"
                for j in range(2):  # two evaluation images per model
                    jitter = 0.01 * (s - 1) + 0.002 * j
                    common = dict(probe="decomposition", model_id=mid, n_backgrounds=n, background=source,
                                  family="resnet", role="")
                    rows.append(common | dict(split="ood", metric="removal_ratio", value=rem[i] + jitter))
                    rows.append(common | dict(split="id", metric="psnr_bg_region", value=fid[i] + 10 * jitter))
    rows.append(dict(probe="decomposition", model_id="oracle", n_backgrounds=np.nan, background=None,
                     family="oracle", role="anchor", split="ood", metric="removal_ratio", value=1.0))
    return pd.DataFrame(rows)


def test_ntrend_numbers_gives_both_sides_per_source():
    metrics = _metrics([0.4, 0.35, 0.3, 0.25, 0.2], [30, 31, 32, 33, 34])
    curves, turns = ntrend_numbers(metrics, fidelity_metric="psnr_bg_region", removal_metric="removal_ratio")
    assert set(curves["side"]) == {"id_fidelity", "ood_removal"}
    assert len(curves) == 2 * 2 * 5 and set(curves["models"]) == {3}
    turns = turns.set_index("background")
    assert turns.loc["smooth", "shape"] == "falls" and turns.loc["dead_leaves", "shape"] == "rises"
    assert turns.loc["smooth", "fidelity_change"] == pytest.approx(4.0)
    assert turns.loc["smooth", "fidelity_change_ci_low"] > 0  # the background side improves with n
    assert "oracle" not in set(curves.get("family", []))


def test_a_study_with_two_values_of_n_has_no_trend():
    metrics = _metrics([0.4, 0.35, 0.3, 0.25, 0.2], [30, 31, 32, 33, 34])
    few = metrics[metrics["n_backgrounds"].isin([4, 1024]) | metrics["n_backgrounds"].isna()]
    curves, turns = ntrend_numbers(few, fidelity_metric="psnr_bg_region", removal_metric="removal_ratio")
    assert curves.empty and turns.empty


def test_the_shipped_ntrend_study_keeps_its_promise():
    from probe.data.backgrounds import BACKGROUNDS
    from probe.grid.scale import rung_names
    from probe.study import load_study
    from probe.train.config import load_toml

    path = ROOT / "analyses" / "derain_ntrend.toml"
    assert (ROOT / "probe" / "analyses" / "derain_ntrend.toml").read_bytes() == path.read_bytes()
    assert {"demo", "long", "gpu", "paper", "pilot"} <= set(rung_names(load_toml(path)))
    for rung in ("demo", "long", "gpu", "paper"):
        spec = load_study(path, scale=rung)
        n = spec.axes["n_backgrounds"]
        assert len(n) >= 5 and min(n) <= 4 and max(n) >= 1024
        assert len(spec.axes["seed"]) >= 3 and not set(spec.axes["seed"]) & {100}  # pilot seeds never reported
        for source in spec.axes["background"]:  # n distinct contents, not crops of a few pictures
            patch = spec.config_for(spec.cells()[0]).data.patch
            assert BACKGROUNDS.get(source)(patch, 0).distinct_contents(max(n)) == max(n)
    assert load_study(path, scale="pilot").axes["seed"] == [100]


def test_pure_noise_is_rarely_read_as_a_trend():
    """3 seeds per n, no trend at all: a verdict other than 'flat' must be rare (the t-interval guards the
    small-sample bootstrap, which alone read ~30 % of such data sets as a trend)."""
    shapes = []
    for s in range(60):
        rng = np.random.default_rng(s)
        n = np.repeat(NS, 3)
        shapes.append(turning_point(n, 0.2 + rng.normal(0, 0.05, len(n)), n_boot=300)["shape"])
    assert shapes.count("flat") >= 54, shapes


def test_the_headline_shows_the_ntrend_figure_and_table(tmp_path):
    from probe.report.context import ReportContext
    from probe.report.sections.ntrend import ntrend_parts

    metrics = _metrics([0.4, 0.35, 0.3, 0.25, 0.2], [30, 31, 32, 33, 34])
    ctx = ReportContext(directory=tmp_path, store=tmp_path / "results.h5", metrics=metrics)
    figures, tables, text = ntrend_parts(ctx)
    assert (tmp_path / figures[0].png).stat().st_size > 1000
    shown = tables[0].frame.set_index("background")
    assert shown.loc["smooth", "shape"] == "falls" and shown.loc["dead_leaves", "shape"] == "rises"
    assert "smooth/ood: removal falls" in text and "dead_leaves/ood: removal rises" in text
    two_n = metrics[metrics["n_backgrounds"].isin([4, 1024])]
    assert ntrend_parts(ReportContext(directory=tmp_path, store=tmp_path / "r.h5", metrics=two_n)) == ([], [], "")
