"""Calibration anchors (identity, oracle, untrained, single): known behaviour, every headline indicator of
every probe separates identity from oracle on the demo data (tiny scale), and `probe measure --anchors`."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import tiny_study

from probe.anchors import HEADLINE, separates
from probe.cli import main
from probe.errors import ConfigError, DataError
from probe.models.anchors import Identity, Oracle, feed, make_anchor, parse_anchors
from probe.probes import PROBES
from probe.probes.evaldata import eval_data_from_info
from probe.store import read_metrics

# the demo study's evaluation splits (analyses/derain_complexity.toml), tiny: 8 images of 32 px
DEMO = {"background": "natural", "splits": {"id": {"type": "rain", "preset": "small"},
                                            "ood": {"type": "rain", "preset": "large"}},
        "n_images": 8, "patch": 32, "seed": 0, "background_options": {}}
PARAMS = {"generalization": {}, "decomposition": {}, "activations": {"n_images": 8, "pixels_per_class": 8},
          "cka": {"n_images": 8, "batch_size": 8}, "ddr": {"n_backgrounds": 4, "samples_per_pair": 1},
          "attribution": {"n_images": 2, "steps": 4, "window": 8, "splits": ["ood"]},
          "cem": {"n_images": 2, "coarse": 1, "fine": 2, "splits": ["ood"]}}


def test_oracle_returns_the_background_identity_the_input():
    data = eval_data_from_info(DEMO)
    oracle, ident = Oracle(), Identity()
    feed(oracle, data)
    feed(ident, data)  # a no-op for any other model
    for batch in data.splits.values():
        assert torch.equal(oracle(batch.degraded), batch.clean) and torch.equal(oracle(batch.clean), batch.clean)
        assert torch.equal(ident(batch.degraded), batch.degraded)
        assert torch.equal(oracle(0.5 * batch.degraded), batch.clean)  # a point on a zero-baseline path
    assert torch.equal(oracle(torch.zeros(1, 3, 32, 32)), torch.zeros(1, 3, 32, 32))  # flat: nothing to remove
    with pytest.raises(DataError, match="no background known"):
        oracle(torch.rand(1, 3, 16, 16))
    with pytest.raises(DataError, match="matches no image"):
        oracle(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)))  # noise: never fed
    assert oracle.probe_points() == ["hook_input", "hook_output"] and not oracle.croppable


def test_anchor_names_are_validated():
    assert parse_anchors("identity, oracle,identity") == ["identity", "oracle"]
    with pytest.raises(ConfigError, match="'perfect'"):
        parse_anchors("identity,perfect")
    with pytest.raises(ConfigError, match="family"):
        make_anchor("untrained")
    m = make_anchor("untrained", family="resnet")
    assert m.anchor == m.role == "untrained" and not m.training


def _rows(result):
    return result.metrics


def _pick(rows, metric, where, split):
    sel = [r for r in rows if r["metric"] == metric and r["split"] in (split, "all")]
    if isinstance(where, dict):
        sel = [r for r in sel if all(r.get(k) == v for k, v in where.items())]
    elif where == "deepest":
        depth = max(r["depth"] for r in sel)
        sel = [r for r in sel if r["depth"] == depth]
    assert len(sel) == 1, (metric, where, sel)
    return sel[0]


@pytest.mark.parametrize("probe", sorted(HEADLINE))
def test_every_headline_indicator_separates_identity_from_oracle(probe):
    warnings.simplefilter("ignore")
    data = eval_data_from_info(DEMO)
    runs = {name: PROBES.get(probe)(**PARAMS[probe]).run(model, data).metrics
            for name, model in (("identity", Identity()), ("oracle", Oracle()))}
    for metric, where in HEADLINE[probe]:
        a, b = (_pick(runs[name], metric, where, "ood") for name in ("identity", "oracle"))
        for row in (a, b):
            assert math.isfinite(row["value"]) or row.get("flag"), row  # a NaN always says why
        assert separates(a["value"], b["value"]), (probe, metric, a, b)
    # known values where they are known exactly
    if probe == "generalization":
        assert _pick(runs["oracle"], "psnr", None, "ood")["value"] == 100.0
        assert _pick(runs["identity"], "psnr", None, "ood")["value"] == pytest.approx(
            _pick(runs["identity"], "psnr_input", None, "ood")["value"])
    if probe == "decomposition":
        assert _pick(runs["oracle"], "removal_ratio", None, "ood")["value"] == pytest.approx(1.0)
        assert _pick(runs["identity"], "removal_ratio", None, "ood")["value"] == pytest.approx(0.0)
    if probe == "attribution":  # the identity removes nothing: no attribution, NaN with the reason
        assert "zero attribution map" in _pick(runs["identity"], "diffusion_index", {"window": "on"}, "ood")["flag"]
    if probe == "cem":  # the shortcut's cem indicators on the anchors: identity removes nothing, oracle the rain
        assert "removes nothing" in _pick(runs["identity"], "rain_share", {"window": "on"}, "ood")["flag"]
        oracle = _pick(runs["oracle"], "rain_dependence", {"window": "on"}, "ood")["value"]
        assert oracle == pytest.approx(1.0, abs=1e-3)


def test_separates_rule():
    assert separates(float("nan"), 1.0) and separates(0.0, 1.0) and not separates(1.0, 1.01)
    assert not separates(float("nan"), float("nan"))


SPEC = tiny_study({"study.name": "anchorstudy", "study.probes": ["generalization", "decomposition"],
                   "base.data.background": "smooth", "base.eval.n_images": 4,
                   "base.eval.splits": {"ood": {"type": "rain", "preset": "large"}}, "axes.n_backgrounds": [2, 4]})


def test_measure_cli_stores_anchors_as_models_with_a_role(tmp_path, capsys, trained_grid):
    grid = trained_grid(SPEC)
    store = tmp_path / "results.h5"
    assert main(["measure", str(grid), "--out", str(store), "--quiet",
                 "--anchors", "identity,oracle,untrained,single"]) == 0
    out = capsys.readouterr().out
    assert "anchors: 4 anchor models" in out and "failed" not in out
    df = read_metrics(store)
    anchors = df[df["role"].isin(["identity", "oracle", "untrained", "single"])]
    assert sorted(anchors["anchor"].unique()) == ["identity", "oracle", "single", "untrained"]
    assert (anchors["role"] == anchors["anchor"]).all()
    assert len(anchors["eval_key"].unique()) == 1 and set(anchors["probe"]) == {"generalization", "decomposition"}
    psnr = anchors[(anchors["metric"] == "psnr") & (anchors["split"] == "ood")].set_index("anchor")["value"]
    assert psnr["oracle"] == 100.0 and psnr["identity"] < 30
    single = anchors[anchors["anchor"] == "single"]
    assert (single["n_backgrounds"] == 1).all()
    assert (tmp_path / "anchors").is_dir() and any((tmp_path / "anchors").iterdir())
    # study models are unchanged and carry no role
    study = df[df["role"].isna() | (df["role"] == "")]
    assert set(study["model_id"].unique()) == set(df["model_id"].unique()) - set(anchors["model_id"].unique())
    assert len(study["model_id"].unique()) == 2
    # re-running skips what is stored; a bad anchor name is one clear line, exit code 2
    assert main(["measure", str(grid), "--out", str(store), "--quiet", "--anchors", "identity"]) == 0
    assert "0 results computed" in capsys.readouterr().out
    assert main(["measure", str(grid), "--out", str(store), "--anchors", "perfect"]) == 2
    assert "'perfect'" in capsys.readouterr().err
