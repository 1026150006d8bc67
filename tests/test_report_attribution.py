"""The report's attribution section on a tiny real grid: figures exist, are linked, and draw the store's numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from probe.report.context import ReportContext
from probe.report.sections import attribution as section_module
from probe.report.sections.attribution import (
    MAX_ROWS,
    _pick_rows,
    attribution,
    attribution_frame,
)

pytestmark = pytest.mark.slow  # every test reads the module's 8-model grid, measured and reported (~11 s)

ATTRIBUTION_PARAMS = '{ method = "ig", steps = 4, n_images = 2, window = 6 }'
BACKGROUNDS = ["dead_leaves", "smooth"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    from test_grid import write_spec

    from probe.grid.runner import run_grid
    from probe.measure import measure
    from probe.report.build import build_report
    from probe.store import ResultStore, read_metrics

    tmp = tmp_path_factory.mktemp("attr_report")
    spec = write_spec(tmp)
    text = spec.read_text()
    text = text.replace('probes = ["generalization", "decomposition"]',
                        'probes = ["generalization", "decomposition", "attribution"]\n'
                        f"probe_params = {{ attribution = {ATTRIBUTION_PARAMS} }}")
    text = text.replace("patch = 16", "patch = 20").replace(
        "seed = [0, 1]", f"seed = [0, 1]\nbackground = {json.dumps(BACKGROUNDS)}")
    spec.write_text(text)
    grid = run_grid(spec, tmp / "grid", workers=1)
    assert grid["done"] == 8 and grid["failed"] == 0
    store_path = tmp / "report" / "results.h5"
    summary = measure(tmp / "grid", out=store_path, show_progress=False)
    assert summary["computed"] == 8 * 3
    real = read_metrics(store_path)
    params = json.loads(real.loc[real["probe"] == "attribution", "params"].iloc[0])
    # a study-level pseudo model with an absurd value: the section must ignore it
    from probe.probes.base import ProbeResult

    bogus = ProbeResult()
    for split in ("id", "ood"):
        for window in ("on", "off"):
            bogus.add_metric(split, "diffusion_index", 999.0, window=window, method="ig", objective="window_sum")
    ResultStore(store_path).write("_study", {"family": "resnet", "background": "smooth", "n_backgrounds": 1,
                                             "seed": 0}, "attribution", params, bogus)
    html = build_report(store_path.parent)
    return {"dir": store_path.parent, "store": store_path, "html": html.read_text(encoding="utf-8"),
            "metrics": read_metrics(store_path)}


def _store_means(metrics: pd.DataFrame) -> pd.Series:
    att = metrics[(metrics["probe"] == "attribution") & (metrics["model_id"] != "_study")]
    return att.groupby(["family", "background", "n_backgrounds", "split", "window", "metric"])["value"].mean()


def test_figures_exist_and_are_linked_from_the_report(built):
    names = [f"attribution_overlay_resnet_{b}" for b in BACKGROUNDS] + ["attribution_di", "attribution_share"]
    for name in names:
        for ext in ("png", "pdf"):
            path = built["dir"] / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert f"src='figures/{name}.png'" in built["html"]
        assert f"href='figures/{name}.pdf'" in built["html"]
    assert "<h2>Attribution</h2>" in built["html"]
    assert "method ig, objective removed, steps 4, n_images 2, window 6" in built["html"]


def test_table_equals_store_means_and_ignores_the_study_pseudo_model(built):
    table = pd.read_csv(built["dir"] / "attribution_summary.csv")
    means = _store_means(built["metrics"])
    assert len(table) == len(BACKGROUNDS) * 2 * 2  # backgrounds × n_backgrounds × splits
    assert set(table["split"]) == {"id", "ood"} and set(table["models"]) == {2}
    columns = {"DI": "diffusion_index", "share on rain": "share_on_rain", "share in mask": "share_in_mask",
               "mask enrichment": "mask_enrichment"}
    checked = 0
    for _, row in table.iterrows():
        for label, metric in columns.items():
            for window in ("on", "off"):
                expected = means[(row["family"], row["background"], row["n_backgrounds"], row["split"], window,
                                  metric)]
                assert row[f"{label} ({window})"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
                checked += 1
    assert checked == len(table) * 8
    assert table["DI (on)"].between(0, 100).all() and (table["DI (on)"] < 999).all()
    assert table["share on rain (on)"].between(0, 1).all()


class _Capture(ReportContext):
    """A report context that records the drawn data of every figure before saving it."""

    captured: dict

    def save(self, fig, name, title, caption=""):
        self.captured[name] = [
            {"label": ax.get_label(), "title": ax.get_title(),
             "lines": {line.get_gid(): (line.get_xdata().astype(float), line.get_ydata().astype(float))
                       for line in ax.get_lines() if line.get_gid()},
             "bands": [c.get_paths()[0].vertices.copy() for c in ax.collections if c.get_paths()]}
            for ax in fig.axes]
        return super().save(fig, name, title, caption)


@pytest.fixture(scope="module")
def captured(built) -> _Capture:
    base = ReportContext.load(built["dir"])
    ctx = _Capture(directory=base.directory, store=base.store, metrics=base.metrics, study=base.study)
    ctx.captured = {}
    assert attribution(ctx) is not None
    return ctx


def test_curves_draw_the_store_means_with_seed_bands(built, captured):
    ctx = captured
    means = _store_means(built["metrics"])
    att = built["metrics"][(built["metrics"]["probe"] == "attribution") & (built["metrics"]["model_id"] != "_study")]
    seen = set()
    for name, metrics in (("attribution_di", ["diffusion_index"]),
                          ("attribution_share", ["share_on_rain", "share_in_mask", "mask_enrichment"])):
        axes = [a for a in ctx.captured[name] if a["lines"]]
        assert len(axes) == len(metrics) * 2  # metrics × splits
        for ax in axes:
            metric, split = ax["label"].split("|")
            assert metric in metrics
            assert len(ax["lines"]) == len(BACKGROUNDS) * 2  # background × window
            for gid, (x, y) in ax["lines"].items():
                background, window = gid.split("|")
                assert list(x) == [1.0, 2.0]
                expected = [means[("resnet", background, int(n), split, window, metric)] for n in x]
                np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-12)
                seen.add((metric, split, gid))
            # two seeds per point: a 95% t-band around every line, bounds from the per-model values
            assert len(ax["bands"]) == len(ax["lines"])
            for (gid, (x, _)), band in zip(ax["lines"].items(), ax["bands"]):
                background, window = gid.split("|")
                for n in x:
                    v = att[(att["metric"] == metric) & (att["split"] == split) & (att["background"] == background)
                            & (att["window"] == window) & (att["n_backgrounds"] == n)]["value"].to_numpy()
                    assert len(v) == 2
                    half = student_t.ppf(0.975, 1) * v.std(ddof=1) / np.sqrt(2)
                    for bound in (v.mean() - half, v.mean() + half):
                        assert np.isclose(band, [n, bound], rtol=1e-6, atol=1e-9).all(axis=1).any()
    assert len(seen) == 4 * 2 * len(BACKGROUNDS) * 2


def test_overlays_show_one_row_per_n_with_the_stored_image_metrics(built, captured):
    from probe.store import read_array

    ctx = captured
    metrics = built["metrics"]
    for background in BACKGROUNDS:
        axes = ctx.captured[f"attribution_overlay_resnet_{background}"]
        assert len(axes) == 2 * 3  # rows n = 1, 2 × (input, window on, window off)
        for row, n in enumerate((1, 2)):
            model = metrics[(metrics["probe"] == "attribution") & (metrics["model_id"] != "_study")
                            & (metrics["background"] == background)
                            & (metrics["n_backgrounds"] == n) & (metrics["seed"] == 0)]["model_id"].iloc[0]
            image_metrics = read_array(built["store"], model, "attribution", "image_metrics")
            for col, window in ((1, "on"), (2, "off")):
                values = image_metrics.sel(split="ood", window=window, image=0)
                di = float(values.sel(metric="diffusion_index"))
                rain = float(values.sel(metric="share_on_rain"))
                assert axes[row * 3 + col]["title"] == f"'{window}': DI {di:.1f}, rain {rain:.0%}"


def test_no_section_without_attribution_results_and_row_cap(built):
    ctx = ReportContext.load(built["dir"])
    ctx.metrics = ctx.metrics[ctx.metrics["probe"] != "attribution"]
    assert attribution(ctx) is None
    only_study = ReportContext.load(built["dir"])
    only_study.metrics = only_study.metrics[only_study.metrics["model_id"] == "_study"]
    assert attribution_frame(only_study.metrics).empty and attribution(only_study) is None

    models = pd.DataFrame({"model_id": [f"m{n}-{s}" for n in range(1, 13) for s in (1, 0)],
                           "n_backgrounds": [n for n in range(1, 13) for _ in (1, 0)],
                           "seed": [s for _ in range(1, 13) for s in (1, 0)]})
    picked = _pick_rows(models)
    assert len(picked) == MAX_ROWS == section_module.MAX_ROWS
    assert picked["n_backgrounds"].iloc[0] == 1 and picked["n_backgrounds"].iloc[-1] == 12
    assert set(picked["seed"]) == {0} and picked["n_backgrounds"].is_monotonic_increasing
