"""Every registered extension honours its contract: families, degradations, background sources, probes, sections.

The tests iterate over the registries, so an entry added later (one file + one registration line) is checked
without touching this file.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from probe.data.backgrounds import BACKGROUNDS, make_background
from probe.data.degradations import DEGRADATIONS, make_degradation
from probe.errors import ConfigError, ProbeError
from probe.models import FAMILIES, HookPoint, build
from probe.probes import PROBES
from probe.probes.base import EvalData, ProbeResult
from probe.report.sections import ORDER, SECTIONS

#: Sources that need a user's folder (an option without a default); they must say so in one ConfigError.
NEEDS_OPTIONS = {"folder"}


#: Families that wrap a user's network (arch = "FILE.py:Class"); their contract is tested in test_external_models.
NEEDS_ARCH = {"external"}


def test_families_needing_an_architecture_say_so():
    for family in NEEDS_ARCH:
        with pytest.raises(ConfigError, match="needs arch"):
            build(family, "tiny")


@pytest.mark.parametrize("family", sorted(set(FAMILIES.names()) - NEEDS_ARCH))
def test_family_contract(family):
    torch.manual_seed(0)
    model = build(family, "tiny").eval()
    hooks = [m for m in model.modules() if isinstance(m, HookPoint)]
    assert hooks, f"{family}: no HookPoint to probe"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    rebuilt = build(**model.spec)  # the recorded spec rebuilds the same architecture
    assert list(rebuilt.state_dict()) == list(model.state_dict())


@pytest.mark.parametrize("name", DEGRADATIONS.names())
def test_degradation_contract(name):
    degradation = make_degradation({"type": name})
    clean = make_background("smooth", patch=64, seed=0).images(2)[..., :64, :64]
    a = degradation.apply(clean, torch.Generator().manual_seed(3))
    b = degradation.apply(clean, torch.Generator().manual_seed(3))
    for part in ("degraded", "clean", "layer", "mask"):
        assert getattr(a, part).shape[0] == 2 and getattr(a, part).shape[-2:] == (64, 64), part
    assert torch.equal(a.clean, clean)
    assert float(a.degraded.min()) >= 0.0 and float(a.degraded.max()) <= 1.0
    assert torch.equal(a.degraded, b.degraded), f"{name}: same generator seed, different output"
    assert not torch.equal(a.degraded, a.clean), f"{name}: default parameters degrade nothing"
    with pytest.raises(ConfigError, match="no_such_key"):
        make_degradation({"type": name, "no_such_key": 1})


@pytest.mark.parametrize("name", BACKGROUNDS.names())
def test_background_contract(name):
    if name in NEEDS_OPTIONS:
        with pytest.raises(ProbeError):
            make_background(name, patch=32, seed=0)
        return
    first = make_background(name, patch=32, seed=0).images(3)
    again = make_background(name, patch=32, seed=0).images(3)
    assert first.ndim == 4 and first.shape[:2] == (3, 3) and min(first.shape[-2:]) >= 32
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, again), f"{name}: same seed, different images"


@pytest.fixture(scope="module")
def tiny_eval() -> EvalData:
    clean = make_background("smooth", patch=32, seed=5).images(8)[..., :32, :32]
    specs = {"id": {"type": "rain", "preset": "small"}, "ood": {"type": "rain", "preset": "large"}}
    degradations = {k: make_degradation(v) for k, v in specs.items()}
    splits = {k: d.apply(clean, torch.Generator().manual_seed(i)) for i, (k, d) in enumerate(degradations.items())}
    return EvalData(splits, degradations, alt_clean=clean.roll(1, dims=0), info={"splits": specs}, seed=0)


@pytest.mark.parametrize("name", PROBES.names())
def test_probe_contract(name, tiny_eval):
    cls = PROBES.get(name)
    with pytest.raises(ConfigError, match="not_a_parameter"):
        cls(not_a_parameter=1)
    probe = cls()
    assert probe.name == name
    if getattr(cls, "study_level", False):  # scored by `probe measure` across a study's models, never one model
        with pytest.raises(ProbeError, match=name):
            probe.run(build("resnet", "tiny").eval(), tiny_eval)
        return
    before = dict(probe.params)
    torch.manual_seed(0)
    result = probe.run(build("resnet", "tiny").eval(), tiny_eval)
    assert isinstance(result, ProbeResult)
    assert probe.params == before, f"{name}: run() changed its parameters"
    assert result.metrics, f"{name}: no metric rows"
    for row in result.metrics:
        assert {"split", "metric", "value"} <= set(row)
        assert isinstance(row["value"], float)


def test_every_section_is_ordered_and_skips_an_empty_store(tmp_path):
    from probe.report.context import ReportContext

    assert set(ORDER) == set(SECTIONS.names())
    empty = pd.DataFrame(columns=["model", "probe", "split", "metric", "value"])
    ctx = ReportContext(directory=tmp_path, store=tmp_path / "results.h5", metrics=empty)
    for name in ORDER:
        assert SECTIONS.get(name)(ctx) is None, f"section {name!r} drew something from an empty store"


def test_probe_train_stays_the_function_after_subpackage_imports(tmp_path):
    """``probe.train`` is the README's function even once ``probe.train.*`` modules are imported."""
    import probe
    import probe.measure  # noqa: F401  (imports that used to rebind probe.train to the package)
    import probe.train.config  # noqa: F401

    assert callable(probe.train)
    with pytest.raises(ConfigError, match="no such config file"):
        probe.train(tmp_path / "missing.toml")
