"""Property test of the plan validator (issue 25): random study specs, small and huge (many axes, up to 100,000
cells) → a plan or one probe.errors error, never another exception, within time and memory bounds; and the
linear validator accepts a plan only if every one of its cells builds (checked cell by cell on small plans)."""

from __future__ import annotations

import copy
import math
import time
import tracemalloc

import pytest
from conftest import tiny_study
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import ProbeError
from probe.grid.checks import check_cell_data
from probe.grid.spec import StudySpec

BASE = tiny_study({"base.data.background": "smooth"})["base"]

#: axis key → (values that build, values a user might mistype there: wrong type, out of range, unknown name)
VALUES = {
    "seed": ([0, 1, 2], [-1, 1.5, "a"]),
    "n_backgrounds": ([1, 2, 4], [0, True]),
    "patch": ([8, 16, 32], [4, 5000]),
    "complexity": ([], [0.1, 0.9]),  # smooth has no complexity option
    "background": (["smooth", "dead_leaves"], ["nope"]),
    "data.background_options.blobs": ([0, 3], [-1, "x"]),
    "data.background_options.size": ([64, 96, None], [8]),
    "lr": ([1e-3, 2e-4], [0.0, -1.0]),
    "iterations": ([1, 3], [0]),
    "degradation.preset": (["small", "large"], ["huge"]),
    "degradation.amount": ([[0.1, 0.2]], [[0.5, 0.1], "lots"]),
    "model.channels": ([8, 16], [-1]),
    "model.widht": ([], [8]),
    "eval.n_images": ([1, 2], [0]),
    "eval.background_options": ([{}], [{"blob": 2}]),
    "nonsense.key": ([], [1]),
    "train.nope": ([], [1]),
}
NAMES = (["plan", "v1.2"], ["..", "a/b", ".x", 7])


def rarely(draw, odds: int) -> bool:
    """True about once in ``odds`` draws (a middle value: hypothesis favours the ends of a range)."""
    return draw(st.integers(0, odds - 1)) == odds // 2


@st.composite
def small_specs(draw):
    """Mostly valid specs (so the soundness check below has plans to check), each with a few chances of a bad
    key, value, repeat, name or table."""
    keys = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3, unique=True))
    axes = {}
    for key in keys:
        good, bad = VALUES[key]
        values = draw(st.lists(st.sampled_from(good), min_size=1, max_size=3, unique_by=repr)) if good else []
        if not values or rarely(draw, 8):
            values.append(draw(st.sampled_from(bad + values[:1])))  # a bad value, or a repeat
        if rarely(draw, 20):
            values = []  # an empty axis
        axes[key] = values
    good, bad = NAMES
    name = draw(st.sampled_from(bad)) if rarely(draw, 10) else draw(st.sampled_from(good))
    raw = {"study": {"name": name, "probes": ["generalization"]}, "base": copy.deepcopy(BASE), "axes": axes}
    if rarely(draw, 4):
        key = draw(st.sampled_from(sorted(VALUES)))
        raw["cells"] = [{key: draw(st.sampled_from(VALUES[key][0] + VALUES[key][1]))}]
    if rarely(draw, 20):
        raw[draw(st.sampled_from(["extra", "axes"]))] = draw(st.sampled_from([[1], "x"]))
    return raw


def every_cell_builds(spec: StudySpec) -> bool:
    for cell in spec.cells():
        try:
            check_cell_data(spec.config_for(cell), spec.source)
        except ProbeError:
            return False
    return True


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(small_specs())
def test_small_random_specs_give_a_plan_or_one_error_and_a_plan_only_if_every_cell_builds(raw):
    try:
        spec = StudySpec.from_dict(raw, source="fuzz.toml")
    except ProbeError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert every_cell_builds(spec)  # the linear validator never lets a failing cell through


@st.composite
def huge_specs(draw):
    """Many axes whose product is 20,000 to 100,000 cells (valid values), sometimes one bad value in one axis."""
    sizes = draw(st.lists(st.integers(2, 40), min_size=3, max_size=10))
    while math.prod(sizes) > 100_000:
        sizes[sizes.index(max(sizes))] //= 2
    while math.prod(sizes) < 20_000:  # doubling the smallest axis never overshoots 100,000 from below 20,000
        sizes[sizes.index(min(sizes))] *= 2
    pools = [("seed", lambda i: i), ("n_backgrounds", lambda i: i + 1), ("train.lr", lambda i: 1e-4 * (i + 1)),
             ("train.warmup", lambda i: i), ("eval.seed", lambda i: i), ("train.log_every", lambda i: i + 1),
             ("train.checkpoint_every", lambda i: i), ("data.background_options.blobs", lambda i: i),
             ("data.clean_fraction", lambda i: i / 100), ("train.min_lr_ratio", lambda i: i / 100)]
    axes = {key: [make(i) for i in range(n)] for (key, make), n in zip(pools, sizes)}
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(axes)))
        axes[key][-1] = -7  # out of range for every pooled key
    return {"study": {"name": "huge"}, "base": copy.deepcopy(BASE), "axes": axes}


@pytest.mark.slow
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(huge_specs())
def test_huge_random_specs_are_planned_within_time_and_memory_bounds(raw):
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        spec = StudySpec.from_dict(raw, source="huge.toml")
        ids = [cell.id for cell in spec.cells()]
        assert len(set(ids)) == len(ids) >= 20_000
    except ProbeError as exc:
        assert "\n" not in str(exc) and "-7" in str(exc)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - t0 < 120  # quadratic planning took > 15 min for 100,000 cells
    assert peak < 400 * 2**20  # bytes: no per-cell training config is kept
