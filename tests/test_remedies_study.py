"""The remedies study: spec levels and priors, the Remedies report section (known effects, no axis → None),
and a tiny end-to-end run of the shipped spec's structure through `probe demo`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import study_toml, tiny_study

from probe.cli import main
from probe.errors import ConfigError
from probe.grid.spec import StudySpec
from probe.report.context import ReportContext
from probe.report.sections.remedies import (
    bootstrap_ci,
    prior_table,
    remedies,
    remedy_effects,
    remedy_verdicts,
    t_interval,
    verdict,
)

SPEC = study_toml(tiny_study({
    "study.name": "tinyremedies", "study.probes": ["generalization", "decomposition"],
    "base.data": {"background": "natural", "n_backgrounds": 4, "patch": 16}, "base.train.iterations": 4,
    "base.eval.splits": {"id": {"type": "rain", "preset": "small"},
                         "ood_streaks": {"type": "rain", "preset": "large"},
                         "ood_particles": {"type": "rain_particles", "preset": "medium"}},
    "axes": {"remedy": ["none", "balanced_mixture", "prior"], "seed": [0, 1]},
    "levels": {"remedy": {
        "none": {},
        "balanced_mixture": {"data.background": "mixture",
                             "data.background_options": {"sources": ["natural", "smooth"], "weights": [0.5, 0.5]}},
        "prior": {"model.family": "prior_restorer", "model.prior": "priors/natural"}}},
    "priors": {"natural": {"out": "priors/natural", "background": "natural", "n_images": 4, "patch": 16,
                           "iterations": 3, "batch": 2}},
}))


def test_levels_map_axis_values_to_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    spec = StudySpec.from_toml(path)
    configs = {c.id: spec.config_for(c) for c in spec.cells()}
    assert sorted(configs) == sorted(f"remedy-{r}__seed-{s}" for r in ("none", "balanced_mixture", "prior")
                                     for s in (0, 1))
    mix = configs["remedy-balanced_mixture__seed-1"]
    assert mix.data.background == "mixture" and mix.seed == 1 and mix.axes == {"remedy": "balanced_mixture",
                                                                                 "seed": 1}
    assert configs["remedy-prior__seed-0"].model.kwargs == {"prior": "priors/natural"}
    assert configs["remedy-none__seed-0"].model.family == "resnet"
    assert spec.priors["natural"]["iterations"] == 3
    with pytest.raises(ConfigError, match=r"no \[levels.remedy.other\]"):
        StudySpec.from_dict({**_raw(SPEC), "axes": {"remedy": ["none", "other"]}}, source="x")
    with pytest.raises(ConfigError, match="priors.natural: unknown key 'bogus'"):
        raw = _raw(SPEC)
        raw["priors"]["natural"]["bogus"] = 1
        StudySpec.from_dict(raw, source="x")


def _raw(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def _metrics(effect: float, bg_cost: float, seeds=(0, 1, 2, 3, 4), remedy_col=True,
             clean_cost: float | None = None) -> pd.DataFrame:
    """A tidy store-like frame with known effects: remedy 'good' adds ``effect`` to OOD removal and
    ``bg_cost`` dB to the ID background PSNR (and ``clean_cost`` dB to the clean-input PSNR, when given);
    'null' changes nothing but noise."""
    rng = np.random.default_rng(0)
    rows = []
    for remedy, d_ood, d_bg in (("none", 0, 0), ("good", effect, bg_cost), ("null", 0, 0)):
        for seed in seeds:
            base_ood, base_bg = 0.1 + 0.02 * seed, 30 + 0.3 * seed  # seed effects shared by the pair
            info = {"model_id": f"{remedy}-{seed}", "probe": "decomposition", "seed": seed}
            if remedy_col:
                info["remedy"] = remedy
            noise = rng.normal(0, 0.002, 4)
            rows += [{**info, "split": "ood_a", "metric": "removal_ratio", "value": base_ood + d_ood + noise[0]},
                     {**info, "split": "ood_b", "metric": "removal_ratio", "value": base_ood + d_ood + noise[1]},
                     {**info, "split": "id", "metric": "psnr_bg_region", "value": base_bg + d_bg + noise[2]},
                     {**info, "split": "ood_a", "metric": "corr_removed_layer", "value": 0.5 + noise[3]}]
            if clean_cost is not None:
                cost = clean_cost if remedy == "good" else 0.0
                rows.append({**info, "split": "clean", "metric": "psnr", "value": 35 + 0.2 * seed + cost})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("effect", "clean_cost", "expected"), [
    (0.2, -0.3, "helps"),                  # more removed, background kept
    (0.2, -4.0, "rewrites the image"),     # more removed by drawing every image anew (a weak prior)
    (0.0, -0.3, "no gain"),
    (0.0, -4.0, "no gain, rewrites the image"),
])
def test_a_remedy_helps_only_if_it_removes_more_and_keeps_the_background(effect, clean_cost, expected):
    effects = remedy_effects(_metrics(effect, 0.0, clean_cost=clean_cost), ["ood_a", "ood_b"])
    table = remedy_verdicts(effects).set_index("remedy")
    assert table.loc["good", "verdict"] == expected
    assert table.loc["good", "clean_psnr_delta"] == pytest.approx(clean_cost, abs=1e-9)
    assert table.loc["null", "verdict"] == "no gain"
    no_clean = remedy_verdicts(remedy_effects(_metrics(effect, 0.0), ["ood_a", "ood_b"])).set_index("remedy")
    assert no_clean.loc["good", "verdict"] == "n/a"  # without clean inputs the background cannot be judged


def test_a_clean_input_change_below_one_grey_level_keeps_the_background():
    """Near-identity networks (clean-input PSNR 60 dB): a 10 dB drop to 50 dB is an RMS change below one 8-bit
    grey level, not a lost background; the same drop from 35 to 25 dB is."""
    from probe.report.sections.remedies import INVISIBLE_DB

    assert INVISIBLE_DB == pytest.approx(48.13, abs=0.01)
    for offset, kept in ((25.0, True), (0.0, False)):
        frame = _metrics(0.2, 0.0, clean_cost=-10.0)
        frame.loc[frame["split"] == "clean", "value"] += offset  # baseline 60 dB (kept) or 35 dB (lost)
        table = remedy_verdicts(remedy_effects(frame, ["ood_a", "ood_b"])).set_index("remedy")
        assert bool(table.loc["good", "background_kept"]) is kept
        assert table.loc["good", "verdict"] == ("helps" if kept else "rewrites the image")
        assert table.loc["good", "clean_psnr"] == pytest.approx(35 + offset - 10 + 0.2, abs=0.3)


def test_effects_recover_known_changes_with_cis():
    effects = remedy_effects(_metrics(0.2, -1.5), ["ood_a", "ood_b"]).set_index(["remedy", "quantity"])
    good_ood = effects.loc[("good", "OOD removal ratio: ood_a")]
    assert good_ood["ci_low"] < 0.2 < good_ood["ci_high"] and good_ood["verdict"] == "better"
    good_bg = effects.loc[("good", "ID background PSNR (dB)")]
    assert good_bg["ci_low"] < -1.5 < good_bg["ci_high"] and good_bg["verdict"] == "worse"
    assert int(good_ood["n_seeds"]) == 5


def test_verdict_false_positive_rate_under_no_effect_is_near_nominal():
    """3 seeds, no effect: the percentile bootstrap alone calls 25 % of null results significant (all three
    differences share a sign); the verdict (bootstrap and t-interval) stays near the nominal 5 %."""
    rng = np.random.default_rng(1)
    calls, boot_calls = 0, 0
    n = 200
    for _ in range(n):
        diff = rng.normal(0, 1, 3)
        low, high = bootstrap_ci(diff)
        t_low, t_high = t_interval(diff)
        boot_calls += verdict(low, high) != "unclear"
        calls += verdict(min(low, t_low), max(high, t_high)) != "unclear"
    assert 0.15 < boot_calls / n < 0.35
    assert calls / n < 0.10
    low, high = bootstrap_ci(np.array([1.0, 2.0, 3.0]))
    assert 1.0 <= low < 2.0 < high <= 3.0
    assert np.isnan(bootstrap_ci(np.array([1.0]))[0])


def test_section_draws_on_a_store_and_is_none_without_the_axis(tmp_path):
    ctx = ReportContext(directory=tmp_path, store=tmp_path / "results.h5", metrics=_metrics(0.2, -1.5))
    section = remedies(ctx)
    assert section.title == "Remedies" and section.figures and (tmp_path / "figures" / "remedies.png").is_file()
    names = [t.name for t in section.tables]
    assert names == ["remedy_verdicts", "remedy_effects", "remedy_indicators"]
    assert "good: OOD removal better on 2/2" in section.text
    assert "good: OOD removal better on 2/2 OOD splits (mean change +0.20" in section.text
    assert section.text.rstrip(".").endswith(": n/a")
    plain = ReportContext(directory=tmp_path, store=tmp_path / "results.h5",
                          metrics=_metrics(0.2, -1.5, remedy_col=False))
    assert remedies(plain) is None


def test_tiny_remedies_study_end_to_end(tmp_path, monkeypatch, capsys):
    """grid (prior first) → measure → the Remedies section, through the CLI (the other, generic report
    sections are left out to keep the suite fast; the shipped spec runs them all via `probe demo`)."""
    from probe.demo import _remedy_table
    from probe.report.build import build_sections, render
    from probe.report.sections import ORDER

    spec = tmp_path / "tinyremedies.toml"
    spec.write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    assert main(["grid", "run", str(spec), "--workers", "1", "-q"]) == 0
    assert (tmp_path / "priors" / "natural" / "prior.safetensors").is_file()
    assert main(["measure", "trained_models/tinyremedies", "-q"]) == 0
    ctx = ReportContext.load(tmp_path / "reports" / "tinyremedies")
    assert set(ctx.metrics["remedy"]) == {"none", "balanced_mixture", "prior"}
    sections = build_sections(ctx, ["remedies"])
    assert "remedies" in ORDER and [s.title for s in sections] == ["Remedies"]
    html = render(ctx, sections)
    assert "OOD removal ratio: ood_particles" in html and "OOD removal ratio: ood_streaks" in html
    effects = next(t.frame for t in sections[0].tables if t.name == "remedy_effects")
    assert set(effects["remedy"]) == {"balanced_mixture", "prior"} and (effects["n_seeds"] == 2).all()
    assert set(_remedy_table(ctx)["remedy"]) == {"balanced_mixture", "prior"}  # what `probe demo` prints
    prior = ctx.study["priors"]["natural"]  # the grid put what the prior reconstructs on record
    assert prior["out"] == "priors/natural" and prior["patch"] == 16 and prior["psnr_test"] < 30
    section = sections[0]
    assert "remedy_priors" in [t.name for t in section.tables]
    assert "Content prior 'natural' reconstructs held-out clean crops at only" in section.text
    verdicts = remedy_verdicts(_remedy_table(ctx))  # the clean split is measured: every remedy is judged
    assert verdicts["clean_psnr_delta"].notna().all() and "n/a" not in set(verdicts["verdict"])


def test_prior_table_flags_a_prior_too_weak_to_test_the_remedy():
    study = {"priors": {"good": {"out": "p/good", "patch": 48, "iterations": 9000, "size": "tiny", "psnr_test": 31.2},
                        "weak": {"out": "p/weak", "patch": 32, "iterations": 600, "size": "tiny", "psnr_test": 26.7},
                        "missing": {"out": "p/missing", "error": "p/missing/prior.json: FileNotFoundError"}}}
    table = prior_table(study).set_index("prior")
    assert table.loc["good", "reconstructs"] is True and table.loc["weak", "reconstructs"] is False
    assert table.loc["missing", "reconstructs"] is None and np.isnan(table.loc["missing", "psnr_test"])
    assert prior_table(None).empty and prior_table({"priors": {}}).empty


def test_shipped_remedies_spec_keeps_its_promise():
    from pathlib import Path

    spec = StudySpec.from_toml(Path(__file__).resolve().parent.parent / "analyses" / "remedies.toml")
    remedy = spec.axes["remedy"]
    assert remedy[0] == "none" and remedy[-1] == "prior"
    balanced = [r for r in remedy if r.startswith("balanced")]
    assert len(balanced) == 4 and len(spec.axes["seed"]) >= 3
    configs = [spec.config_for(c) for c in spec.cells()]
    assert {c.train.iterations for c in configs} == {600} and {c.train.batch for c in configs} == {8}  # budget
    none = configs[0]
    assert none.data.background == "natural" and none.model.family == "resnet"
    ood = {k: v for k, v in none.eval.splits.items() if k != "id"}
    assert len(ood) >= 2 and len({v["type"] for v in ood.values()}) >= 2  # a second kind of rain
    prior = [c for c in configs if c.axes["remedy"] == "prior"][0]
    assert prior.model.kwargs["prior"] == spec.priors["natural"]["out"]


@pytest.mark.parametrize("rung", ["long", "long_pilot"])
def test_the_long_rung_trains_a_prior_at_the_cells_patch_and_scales_the_curriculum(rung):
    from pathlib import Path

    spec = StudySpec.from_toml(Path(__file__).resolve().parent.parent / "analyses" / "remedies.toml", scale=rung)
    configs = {c.axes["remedy"]: spec.config_for(c) for c in spec.cells()}
    prior = spec.priors["natural"]
    assert prior["patch"] == configs["none"].data.patch and prior["size"] == configs["prior"].model.size
    assert configs["prior"].model.kwargs["prior"] == prior["out"] != "trained_models/remedies_prior/natural"
    steps = configs["none"].train.iterations
    assert configs["balanced_curriculum"].data.curriculum == round(steps * 2 / 3)  # the demo's 400 of 600
