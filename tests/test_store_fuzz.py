"""Property test over damaged stores (issue 25): random byte flips and truncations of a real small store. Every
read either returns exactly what was written (verified) or raises a :mod:`probe.errors` error — never another
exception, never a wrong number — within time and memory bounds."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import ProbeError
from probe.store import ResultStore, list_entries, read_array, read_metrics, read_model_info

TIME_LIMIT_S = 5.0  # per damaged store, all reads together
MEMORY_LIMIT = 64 << 20  # peak Python/numpy allocation per damaged store


def _result(i: int) -> SimpleNamespace:
    rng = np.random.default_rng(i)
    arrays = {"psnr": xr.DataArray(rng.random((2, 6)), dims=("split", "image"),
                                   coords={"split": ["id", "ood"], "image": np.arange(6)}, attrs={"units": "dB"}),
              "names": xr.DataArray(np.array(["a", "bb", "ccc"]), dims="k")}
    metrics = [{"split": s, "metric": "psnr", "value": float(rng.random()), "layer": k, "mask": "binary"}
               for k, s in enumerate(("id", "ood"))]
    return SimpleNamespace(arrays=arrays, metrics=metrics)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("pristine")
    path = folder / "results.h5"
    store = ResultStore(path)
    with store.transaction():
        for i in range(2):
            store.write(f"m{i}", {"family": "resnet", "i": i}, "gen", {"k": i}, _result(i), sha256=f"{i:064x}",
                        provenance={"git_revision": "x", "time": "t"})
    expected = {"metrics": read_metrics(path), "entries": list_entries(path),
                "arrays": {(m, a): read_array(path, m, "gen", a) for m in ("m0", "m1") for a in ("psnr", "names")},
                "info": {m: read_model_info(path, m) for m in ("m0", "m1")}}
    return path, expected


def _reads(path: Path, expected: dict) -> None:
    """Each read: equal to the original, or a ProbeError (anything else fails the test)."""
    checks = [(lambda: read_metrics(path), lambda got: got.equals(expected["metrics"])),
              (lambda: list_entries(path), lambda got: got.equals(expected["entries"]))]
    for (model, name), arr in expected["arrays"].items():
        checks.append((lambda m=model, n=name: read_array(path, m, "gen", n),
                       lambda got, a=arr: got.identical(a)))
    for model, info in expected["info"].items():
        checks.append((lambda m=model: read_model_info(path, m), lambda got, i=info: got == i))
    for read, same in checks:
        try:
            got = read()
        except ProbeError as exc:
            assert "\n" not in str(exc)
            continue
        assert same(got), f"a damaged store gave different data without an error: {got}"


def _bounded(path: Path, expected: dict) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        _reads(path, expected)
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < TIME_LIMIT_S
    assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6))
def test_byte_flips_never_give_wrong_numbers(pristine, tmp_path_factory, flips):
    source, expected = pristine
    data = bytearray(source.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path = tmp_path_factory.mktemp("flip") / "results.h5"
    path.write_bytes(bytes(data))
    _bounded(path, expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.floats(0, 1, exclude_max=True))
def test_truncations_are_one_line_errors(pristine, tmp_path_factory, keep):
    source, expected = pristine
    data = source.read_bytes()
    path = tmp_path_factory.mktemp("cut") / "results.h5"
    path.write_bytes(data[: int(keep * len(data))])
    _bounded(path, expected)


def test_a_damaged_segment_is_named(pristine, tmp_path):
    source, _expected = pristine
    path = tmp_path / "results.h5"
    shutil.copyfile(source, path)
    ResultStore(path).write("m2", {"family": "x"}, "gen", {"k": 2}, _result(2))  # goes into a commit segment
    (segment,) = (tmp_path / "results.h5.d").iterdir()
    data = bytearray(segment.read_bytes())
    for i in range(len(data) // 2, len(data)):
        data[i] ^= 0x5A
    segment.write_bytes(bytes(data))
    with pytest.raises(ProbeError) as info:
        read_metrics(path)
    assert str(path) in str(info.value) and segment.name in str(info.value) and "\n" not in str(info.value)
