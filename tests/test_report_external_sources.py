"""Report of external networks measured on every background source of a grid (one stored result per source)
and on real pairs alone: example strips drawn per source, bars per source (never pooled), footnotes that point
only at what is there, real-pair splits under their own names with a headline line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_study
from PIL import Image

from probe.measure import measure
from probe.report.build import NA_MARK, build_report
from probe.report.context import Figure, ReportContext, Table

ARCHS = Path(__file__).parent / "external_archs"
ARCH = f"{ARCHS / 'nets.py'}:MultiStage"
SOURCES = {"smooth", "dead_leaves"}


def _checkpoint(path: Path) -> Path:
    sys.path.insert(0, str(ARCHS))
    try:
        import nets
    finally:
        sys.path.remove(str(ARCHS))
    torch.manual_seed(0)
    torch.save({"params": nets.MultiStage(width=8).state_dict()}, path)
    return path


def _pairs(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        clean = (rng.random((36, 40, 3)) * 160).astype(np.uint8)
        rain = clean.copy()
        rain[:, (3 * i + 2) % 40] = 250
        for sub, image in (("rain", rain), ("norain", clean)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / sub / f"{sub}-{i}.png")
    return root


@pytest.fixture(scope="module")
def stores(trained_grid, tmp_path_factory) -> dict[str, Path]:
    grid = trained_grid(tiny_study({"study.name": "two_sources", "study.probes": ["decomposition"],
                                    "base.train.iterations": 2, "base.eval.n_images": 2,
                                    "axes": {"background": sorted(SOURCES), "n_backgrounds": [1, 2]}}))
    root = tmp_path_factory.mktemp("ext_sources")
    ckpt = _checkpoint(root / "net.pth")
    beside = root / "beside" / "results.h5"
    measure(grid, out=beside)
    measure(ckpt, arch=ARCH, arch_kwargs={"width": 8}, name="mynet", out=beside)
    real = root / "real" / "results.h5"
    measure(ckpt, arch=ARCH, arch_kwargs={"width": 8}, name="mynet", out=real, probes=["decomposition",
            "generalization"], eval_folders={"ValSet": str(_pairs(root / "valset"))}, eval_patch=32)
    return {"beside": beside.parent, "real": real.parent}


def _captured(folder: Path) -> tuple[ReportContext, dict]:
    """A report context whose figures are kept (not saved) for inspection."""
    ctx, figures = ReportContext.load(folder), {}

    def save(fig, name, title, caption=""):
        figures[name] = (fig, caption)
        return Figure(name, title, caption)

    ctx.save = save
    return ctx, figures


def test_every_example_strip_is_drawn_and_externals_sit_under_their_source(stores):
    from probe.report.sections.examples import examples

    ctx, figures = _captured(stores["beside"])
    examples(ctx)
    fig, caption = figures["examples"]
    assert fig.axes and all(ax.images for ax in fig.axes), "an example row is drawn as empty axes"
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    ext = [label for label in labels if "external" in label]
    assert {label.split(", ")[-1].rstrip(")") for label in ext} == SOURCES  # one strip per source
    for label in ext:  # each under its source's grid rows: the nearest grid label above has that source
        source = label.split(", ")[-1].rstrip(")")
        above = [x for x in labels[:labels.index(label)] if "external" not in x]
        assert above and source in above[-1]
    assert "Left out" not in caption


def test_decomposition_bars_show_external_networks_per_source_not_pooled(stores):
    from probe.report.sections.bars import decomposition_bars

    ctx, figures = _captured(stores["beside"])
    decomposition_bars(ctx)
    fig, caption = figures["decomposition_bars"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert not any("external" in t for t in titles)
    assert {t.split(" | ")[0].removeprefix("source = ") for t in titles} == SOURCES
    at = [t.get_text() for t in fig.axes[-1].get_xticklabels()].index("mynet")  # shared x: labels at the bottom
    for ax in fig.axes:
        heights = [c[at].get_height() for c in ax.containers]
        assert all(np.isfinite(h) and h > 0 for h in heights), (ax.get_title(), heights)
    assert "One row per evaluation source" in caption


def test_na_footnote_points_only_at_a_column_that_is_there():
    import pandas as pd

    from probe.report.build import na_footnote

    blank = pd.DataFrame({"value": [1.0, float("nan")]})
    assert na_footnote(Table("t", "t", pd.DataFrame({"value": [1.0]}))) == ""
    assert "column" not in na_footnote(Table("t", "t", blank))
    assert "<code>note</code>" in na_footnote(Table("t", "t", blank.assign(note=["", "why"])))
    assert "<code>flag</code>" in na_footnote(Table("t", "t", blank.assign(flag=["", "non-finite"])))
    assert na_footnote(Table("t", "t", blank, na_note="a < b")) == f"{NA_MARK}: a &lt; b"


def test_beside_grid_report_has_no_dangling_flag_footnote(stores, tmp_path):
    import shutil

    folder = tmp_path / "rep"
    shutil.copytree(stores["beside"], folder)
    html = build_report(folder).read_text()
    assert "the metric rows' <code>flag</code> column" not in html
    assert "removal_fewest / removal_most are kept for grid families" in html  # the family table's blanks
    overview = __import__("pandas").read_csv(folder / "family_overview.csv")
    mine = overview[overview["model"] == "mynet"]
    assert set(mine["source"]) == SOURCES and len(mine) == len(SOURCES)  # per source, not pooled


def test_real_pairs_are_listed_by_their_split_names_and_the_headline_says_what_it_shows(stores):
    from probe.report.sections.families import families
    from probe.report.sections.headline import headline

    ctx = ReportContext.load(stores["real"])
    assert ctx.ood_splits() == []  # ValSet is a real test set, not the study's unseen rain
    table = families(ctx).tables[-1]
    assert "unseen" not in table.title and "real pairs" in table.title
    assert list(table.frame["split"]) == ["ValSet"] and list(table.frame["evaluation"]) == ["real pairs"]
    section = headline(ctx)
    assert "real pairs alone" in section.text and "mynet on ValSet: PSNR" in section.text
    assert any(t.name == "external_models" for t in section.tables)


def test_an_unreadable_strip_is_left_out_and_named_never_an_empty_row(stores, monkeypatch):
    import probe.store
    from probe.errors import StoreError
    from probe.report.sections.examples import examples

    real_read = probe.store.read_array

    def read(path, model_id, *args, **kwargs):
        if "mynet" in model_id:
            raise StoreError("broken on purpose")
        return real_read(path, model_id, *args, **kwargs)

    monkeypatch.setattr(probe.store, "read_array", read)
    ctx, figures = _captured(stores["beside"])
    examples(ctx)
    fig, caption = figures["examples"]
    assert all(ax.images for ax in fig.axes) and not any("external" in ax.get_ylabel() for ax in fig.axes)
    assert "Left out" in caption and "mynet" in caption and "broken on purpose" in caption
