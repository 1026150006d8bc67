"""probe.store: HDF5 layout, round trips, has()/overwrite semantics, readers, bad files, crash safety, lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import xarray as xr

from probe.errors import StoreError
from probe.store import (
    SCHEMA_VERSION,
    ResultStore,
    entry_key,
    list_entries,
    list_models,
    read_array,
    read_metrics,
    read_model_info,
)

ROOT = Path(__file__).resolve().parent.parent
PROV = {"versions": {"numpy": np.__version__, "h5py": h5py.__version__}, "git_revision": "abc123",
        "time": "2024-01-01T00:00:00+00:00"}


def result(arrays=None, metrics=None) -> SimpleNamespace:
    """Any object with .arrays and .metrics is a result (the store never imports probe.probes)."""
    return SimpleNamespace(arrays=arrays or {}, metrics=metrics or [])


def simple(value: float = 1.0) -> SimpleNamespace:
    arr = xr.DataArray(np.array([value, value + 1]), dims=("split",), coords={"split": ["id", "ood"]})
    return result({"psnr": arr}, [{"split": "id", "metric": "psnr", "value": value},
                                  {"split": "ood", "metric": "psnr", "value": value + 1}])


def entry_group(f: h5py.File, model_id: str, probe: str) -> h5py.Group:
    (key,) = list(f[f"models/{model_id}/probes/{probe}"])
    return f[f"models/{model_id}/probes/{probe}/{key}"]


# --------------------------------------------------------------------------------------- round trips


def test_round_trip_metrics_and_arrays(tmp_path):
    path = tmp_path / "results.h5"
    rng = np.random.default_rng(0)
    cube = rng.random((2, 3, 4)).astype(np.float32)
    cube[1, 2, 3] = np.nan
    arrays = {
        "cube": xr.DataArray(cube, dims=("split", "image", "layer"),
                             coords={"split": ["id", "ood"], "image": [10, 20, 30],
                                     "layer": np.array(["a", "bb", "ccc", "é"], dtype=object),
                                     "weight": ("image", [0.5, 1.5, np.nan])},
                             attrs={"units": "dB", "scale": [1, 2]}),
        "scalar": xr.DataArray(np.float64(np.nan), attrs={"note": "0-d"}),
        "scalar_coord": xr.DataArray(np.arange(3), dims="k").assign_coords(split="ood"),
        "line": xr.DataArray([1.0, np.nan, -np.inf], dims="t", coords={"t": [0.0, 0.5, 1.0]}),
        "flags": xr.DataArray(np.array([True, False]), dims="s", coords={"s": ["x", "y"]}),
        "names": xr.DataArray(np.array(["rain", "snow"]), dims="s"),
        "empty": xr.DataArray(np.zeros((0, 3)), dims=("image", "c")),
        "plain": np.arange(6, dtype=np.int16).reshape(2, 3),
    }
    metrics = [{"split": "id", "metric": "psnr", "value": 30.5, "layer": 1, "mask": "binary"},
               {"split": "ood", "metric": "psnr", "value": np.nan, "layer": 2, "mask": "soft"},
               {"split": "ood", "metric": "ssim", "value": 0.75, "layer": 3, "ok": True}]
    ResultStore(path).write("m0", {"family": "resnet"}, "generalization", {"splits": ["id", "ood"]},
                            result(arrays, metrics), eval_info={"seed": 0}, provenance=PROV)
    for name, expected in arrays.items():
        got = read_array(path, "m0", "generalization", name)
        if isinstance(expected, np.ndarray):
            expected = xr.DataArray(expected, dims=("dim_0", "dim_1"))
        xr.testing.assert_identical(got, expected.rename(name))
        assert got.dtype == expected.dtype
    assert read_array(path, "m0", "generalization", "cube").coords["layer"].dtype == object
    df = read_metrics(path)
    assert len(df) == 3
    assert df["value"].tolist()[0] == 30.5 and np.isnan(df["value"].tolist()[1])
    assert df["layer"].tolist() == [1, 2, 3] and df["layer"].dtype == np.int64
    assert df["mask"].tolist() == ["binary", "soft", ""]
    assert df["ok"].tolist()[2] == 1.0 and np.isnan(df["ok"].tolist()[0])
    assert json.loads(df["params"][0]) == {"splits": ["id", "ood"]}
    assert json.loads(df["eval"][0]) == {"seed": 0}


def test_layout_attributes_provenance_and_scales_readable_with_plain_h5py(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    arr = xr.DataArray(np.ones((2, 50)), dims=("split", "image"),
                       coords={"split": ["id", "ood"], "image": np.arange(50)})
    store.write("m0", {"family": "unet", "path": "runs/m0"}, "decomposition", {"k": 3}, result({"err": arr}),
                sha256="f" * 64, eval_info={"n": 2}, provenance=PROV)
    store.write("m1", {"family": "unet"}, "decomposition", {"k": 3}, simple())  # default provenance
    store.compact()  # one self-contained file (the second write went into a commit segment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.h5", "results.h5.lock"]
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION == 2 and f.attrs["created"]
        model = f["models/m0"]
        assert model.attrs["sha256"] == "f" * 64 and model.attrs["path"] == "runs/m0"
        assert json.loads(model["info"].asstr()[()]) == {"family": "unet", "path": "runs/m0"}
        entry = entry_group(f, "m0", "decomposition")
        assert entry.name.endswith(entry_key({"k": 3}, {"n": 2}))
        checksum = entry.attrs["checksum"]
        assert checksum.startswith("sha256:") and len(checksum) == 71
        assert dict(entry.attrs) == {"probe": "decomposition", "model_id": "m0", "sha256": "f" * 64,
                                     "entry_key": entry_key({"k": 3}, {"n": 2}), "git_revision": "abc123",
                                     "time": PROV["time"], "checksum": checksum}
        assert json.loads(entry["params"].asstr()[()]) == {"k": 3}
        assert json.loads(entry["eval"].asstr()[()]) == {"n": 2}
        assert json.loads(entry["provenance"].asstr()[()]) == PROV
        ds = entry["arrays/err"]
        assert list(ds.attrs["dims"]) == ["split", "image"] and ds.compression == "gzip"
        assert [d.label for d in ds.dims] == ["split", "image"]
        assert list(ds.dims[0][0].asstr()[()]) == ["id", "ood"]
        assert ds.dims[1][0][()].tolist() == list(range(50))
        default = entry_group(f, "m1", "decomposition")
        prov = json.loads(default["provenance"].asstr()[()])
        assert "numpy" in prov["versions"] and "h5py" in prov["versions"]
        assert default.attrs["git_revision"] == prov["git_revision"] and default.attrs["time"]
    entries = store.entries()
    assert entries[["model_id", "probe"]].values.tolist() == [["m0", "decomposition"], ["m1", "decomposition"]]
    assert entries["arrays"].tolist() == [["err"], ["psnr"]] and entries["n_metrics"].tolist() == [0, 2]
    assert list_entries(path).equals(entries)
    assert read_model_info(path, "m0") == {"family": "unet", "path": "runs/m0", "sha256": "f" * 64}


# ------------------------------------------------------------------------------------------- semantics


def test_has_semantics(tmp_path):
    store = ResultStore(tmp_path / "results.h5")
    assert not store.has("m0", "generalization", {})  # no store yet
    store.write("m0", {}, "generalization", {"splits": ["id"], "bs": 4}, simple(), eval_info={"seed": 0},
                sha256="aa")
    assert store.has("m0", "generalization", {"bs": 4, "splits": ["id"]}, eval_info={"seed": 0})
    assert store.has("m0", "generalization", '{"splits": ["id"], "bs": 4}', eval_info={"seed": 0})
    assert not store.has("m0", "generalization", {"splits": ["id"], "bs": 8}, eval_info={"seed": 0})
    assert not store.has("m0", "generalization", {"splits": ["id"], "bs": 4}, eval_info={"seed": 1})
    assert not store.has("m0", "generalization", {"splits": ["id"], "bs": 4})
    assert not store.has("m1", "generalization", {"splits": ["id"], "bs": 4}, eval_info={"seed": 0})
    assert not store.has("m0", "decomposition", {"splits": ["id"], "bs": 4}, eval_info={"seed": 0})
    assert store.has("m0", "generalization", {"splits": ["id"], "bs": 4}, {"seed": 0}, sha256="aa")
    assert not store.has("m0", "generalization", {"splits": ["id"], "bs": 4}, {"seed": 0}, sha256="bb")


def test_overwrite_identical_entry_does_not_duplicate(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    store.write("m0", {"family": "resnet"}, "generalization", {"a": 1}, simple(1.0))
    store.write("m0", {"family": "resnet"}, "generalization", {"a": 1}, simple(5.0))
    store.write("m0", {"family": "resnet"}, "generalization", {"a": 2}, simple(9.0))
    df = read_metrics(path)
    assert len(df) == 4 and len(store.entries()) == 2
    assert sorted(df[df.params == '{"a":1}'].value) == [5.0, 6.0]
    assert read_array(path, "m0", "generalization", "psnr", params={"a": 1}).values.tolist() == [5.0, 6.0]
    # new weights under the same id: results of the old weights go
    store.write("m0", {"family": "resnet"}, "generalization", {"a": 1}, simple(1.0), sha256="11")
    store.write("m0", {"family": "resnet"}, "generalization", {"a": 1}, simple(2.0), sha256="22")
    assert store.entries()["sha256"].tolist() == ["22"] and sorted(read_metrics(path).value) == [2.0, 3.0]


def test_read_metrics_columns_include_model_info(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    info = {"family": "resnet", "size": "tiny", "background": "gradients", "n_backgrounds": 16, "seed": 1,
            "axes": {"n_backgrounds": 16}}
    ResultStore(a).write("m16", info, "generalization", {}, simple(3.0))
    ResultStore(a).write("m4", {**info, "n_backgrounds": 4, "family": "unet"}, "generalization", {},
                         result(metrics=[{"split": "id", "metric": "psnr", "value": 1.0, "seed": 7}]))
    ResultStore(b).write("x", {"family": "nafnet", "extra": None}, "decomposition", {}, simple())
    df = read_metrics(a)
    assert list(df.columns) == ["model_id", "probe", "params", "eval", "split", "metric", "value", "seed",
                                "family", "size", "background", "n_backgrounds", "model_seed", "axes"]
    assert df.set_index("model_id")["n_backgrounds"].to_dict() == {"m16": 16, "m4": 4}
    assert df[df.model_id == "m4"]["seed"].tolist() == [7] and set(df.model_seed) == {1}
    assert json.loads(df["axes"][0]) == {"n_backgrounds": 16}
    both = read_metrics([a, b])
    assert len(both) == 5 and both[both.model_id == "x"]["family"].tolist() == ["nafnet", "nafnet"]
    assert "extra" in both.columns
    empty = tmp_path / "empty.h5"
    ResultStore(empty).write("m", {"family": "f"}, "p", {}, result())
    assert list(read_metrics(empty).columns)[:7] == ["model_id", "probe", "params", "eval", "split",
                                                     "metric", "value"]
    assert len(read_metrics(empty)) == 0 and list_models(empty) == ["m"]


def test_large_info_dict_over_attribute_limit(tmp_path):
    path = tmp_path / "results.h5"
    info = {"family": "swinir", "config": {f"key{i}": "x" * 100 for i in range(1000)}}  # ~110 KB of JSON
    assert len(json.dumps(info)) > 64 * 1024
    ResultStore(path).write("m0", info, "generalization", {"config": info["config"]}, simple())
    assert read_model_info(path, "m0")["config"] == info["config"]
    df = read_metrics(path)
    assert json.loads(df["config"][0]) == info["config"] and df["family"][0] == "swinir"
    assert ResultStore(path).has("m0", "generalization", {"config": info["config"]})


def test_read_array_picks_the_entry(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    store.write("m0", {}, "gen", {"a": 1}, simple(1.0))
    store.write("m0", {}, "gen", {"a": 2}, simple(2.0), eval_info={"seed": 3})
    with pytest.raises(StoreError, match=r"2 'gen' results .* choices: .*\"a\":1.*\"a\":2"):
        read_array(path, "m0", "gen", "psnr")
    assert read_array(path, "m0", "gen", "psnr", params={"a": 2}).values.tolist() == [2.0, 3.0]
    assert read_array(path, "m0", "gen", "psnr", eval_info={"seed": 3}).values.tolist() == [2.0, 3.0]
    with pytest.raises(StoreError, match=r"no 'gen' results"):
        read_array(path, "m0", "gen", "psnr", params={"a": 3})
    with pytest.raises(StoreError, match=r"no array 'nope'; arrays: psnr"):
        read_array(path, "m0", "gen", "nope", params={"a": 1})
    with pytest.raises(StoreError, match=r"no model 'zz'; models: m0"):
        read_array(path, "zz", "gen", "psnr")
    with pytest.raises(StoreError, match=r"no 'other' results for model 'm0'; probes: gen"):
        read_array(path, "m0", "other", "psnr")


def test_transaction_batches_and_rolls_back(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    store.write("m0", {}, "gen", {}, simple())
    with store.transaction():
        for i in range(1, 4):
            store.write(f"m{i}", {}, "gen", {}, simple(float(i)))
        assert store.has("m3", "gen", {}) and len(store.entries()) == 4  # the writer sees its own writes
        assert list_models(path) == ["m0"]  # readers see the last commit only
    assert list_models(path) == ["m0", "m1", "m2", "m3"]
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction():
            store.write("m9", {}, "gen", {}, simple())
            raise RuntimeError("boom")
    assert list_models(path) == ["m0", "m1", "m2", "m3"]
    files = sorted(p.name for p in tmp_path.rglob("*"))
    with store.transaction():  # only queries: nothing is written, no lock taken
        assert store.has("m1", "gen", {}) and not store.has("m9", "gen", {})
    assert sorted(p.name for p in tmp_path.rglob("*")) == files
    store.write("m4", {}, "gen", {}, simple())
    assert list_models(path) == ["m0", "m1", "m2", "m3", "m4"]
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]


def test_delete_and_compaction_keep_the_rest_readable(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    big = xr.DataArray(np.random.default_rng(1).random((4, 64, 64)), dims=("split", "y", "x"),
                       coords={"split": ["a", "b", "c", "d"], "y": np.arange(64)})
    for i in range(3):
        store.write("keep", {}, "gen", {"i": i}, result({"big": big}))
    for _ in range(6):
        store.write("churn", {}, "gen", {}, result({"big": big + 1}))
    assert store.delete("churn", "gen", {}) == 1 and store.delete("churn", "gen", {}) == 0
    assert store.delete("keep", "gen", {"i": 2}) == 1 and store.delete("nobody") == 0
    store.compact()
    assert path.stat().st_size < 3 * big.nbytes  # replaced and deleted results take no space
    for i in range(2):
        xr.testing.assert_identical(read_array(path, "keep", "gen", "big", params={"i": i}), big.rename("big"))
    with h5py.File(path, "r") as f:  # dimension scales survive the rewrite
        ds = f[f"models/keep/probes/gen/{entry_key({'i': 0})}/arrays/big"]
        assert list(ds.dims[0][0].asstr()[()]) == ["a", "b", "c", "d"] and ds.dims[1][0][()][-1] == 63
        assert len(ds.dims[2].keys()) == 0
    store.write("keep", {}, "gen", {"i": 0}, result({"big": big * 2}))
    assert read_array(path, "keep", "gen", "big", params={"i": 0}).values.max() == big.values.max() * 2
    assert store.delete("keep") == 2 and list_models(path) == ["churn"]  # a model outlives its results


# ------------------------------------------------------------------------------------------ bad input


def test_bad_files_raise_one_line_store_error(tmp_path):
    good = tmp_path / "good.h5"
    ResultStore(good).write("m0", {}, "gen", {}, simple())
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    future = tmp_path / "future.h5"
    future.write_bytes(good.read_bytes())
    with h5py.File(future, "a") as f:
        f.attrs["schema_version"] = 3
    for bad in (tmp_path / "missing.h5", text, truncated, foreign, future):
        for call in (lambda p: read_metrics(p), lambda p: list_models(p),
                     lambda p: read_array(p, "m0", "gen", "psnr"), lambda p: ResultStore(p).has("m0", "gen", {})):
            try:
                call(bad)
            except StoreError as exc:
                message = str(exc)
                assert str(bad) in message and "\n" not in message, message
            else:
                assert bad.name == "missing.h5"  # has() on a store not yet written is just False
    with pytest.raises(StoreError, match="schema version 3"):
        read_metrics(future)
    before = text.read_bytes()
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        ResultStore(text).write("m0", {}, "gen", {}, simple())
    assert text.read_bytes() == before  # a writer never replaces a file that is not a store


def test_bad_results_are_rejected_before_touching_the_store(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    store.write("m0", {}, "gen", {}, simple())
    before = path.read_bytes()
    cases = [
        ("m/1", simple(), "invalid model id"),
        ("m1", object(), "need an object with .arrays and .metrics"),
        ("m1", result(metrics=[{"split": "id", "value": 1.0}]), "no 'metric' key"),
        ("m1", result(metrics=[{"split": "id", "metric": "x", "value": "high"}]), "must be a number"),
        ("m1", result(metrics=[{"split": "id", "metric": "x", "value": 1, "probe": "p"}]), "reserved"),
        ("m1", result(metrics=[{"split": "id", "metric": "x", "value": 1, "k": [1]}]), "column 'k'"),
        ("m1", result({"t": xr.DataArray(np.array(["2020-01-01"], dtype="datetime64[ns]"))}),
         "unsupported dtype"),
        ("m1", result({"a": xr.DataArray([1.0], attrs={"blob": "x" * 70_000})}), "attrs are"),
    ]
    for model_id, res, message in cases:
        with pytest.raises(StoreError, match=message):
            store.write(model_id, {}, "gen", {}, res)
    assert path.read_bytes() == before and list_models(path) == ["m0"]


# ------------------------------------------------------------------------------- crash safety and lock

WRITER = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    from types import SimpleNamespace
    from probe.store import ResultStore
    sys.path.insert(0, sys.argv[5])
    from test_store import deterministic_result
    path, start, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = ResultStore(path, lock_timeout=30)
    for first in range(start, start + count, batch):
        with store.transaction():
            for i in range(first, first + batch):
                store.write(f"w{i}", {"index": i}, "gen", {"i": i}, deterministic_result(i),
                            sha256=f"{i:064x}", provenance={"git_revision": "t", "time": "now"})
        print(first + batch - 1, flush=True)
""")


def deterministic_result(i: int) -> SimpleNamespace:
    """Content that is a pure function of ``i`` (the killed writer and the checks both build it)."""
    cube = (np.arange(4 * 48 * 48, dtype=np.float64).reshape(4, 48, 48) * (i + 1)) % 7.3
    arrays = {"cube": xr.DataArray(cube, dims=("split", "y", "x"), coords={"split": ["a", "b", "c", "d"]},
                                   attrs={"i": i})}
    metrics = [{"split": s, "metric": "m", "value": i + k / 10, "layer": k} for k, s in enumerate("abcd")]
    return result(arrays, metrics)


def check_entry(path: Path, i: int) -> None:
    expected = deterministic_result(i)
    xr.testing.assert_identical(read_array(path, f"w{i}", "gen", "cube"), expected.arrays["cube"].rename("cube"))
    assert read_model_info(path, f"w{i}")["index"] == i


def start_writer(path: Path, start: int, count: int, batch: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start), str(count), str(batch),
                             str(Path(__file__).parent)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def test_killed_writer_never_corrupts_the_store(tmp_path):
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    with store.transaction():
        for i in range(3):
            store.write(f"w{i}", {"index": i}, "gen", {"i": i}, deterministic_result(i))
    original = read_metrics(path)
    start = 100
    rounds = [(1, 0.0, 1), (3, 0.004, 1), (2, 0.009, 4)]
    # wall-clock kills: if none of the planned rounds happened to land inside a commit, try a few more
    rounds += [(2, 0.002 * k, 1) for k in range(1, 6)]
    for round_, (wait_commits, delay, batch) in enumerate(rounds):
        if round_ >= 3:
            break
        proc = start_writer(path, start, 400, batch)
        for _ in range(wait_commits):
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read()}"
            last_printed = int(line)
        time.sleep(delay)
        assert proc.poll() is None, "the writer finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]  # O_TMPFILE: a kill leaves nothing
        # the store opens, earlier entries are intact, and every visible entry is complete
        models = list_models(path)
        written = sorted(int(m[1:]) for m in models if int(m[1:]) >= start)
        assert written == list(range(start, start + len(written))), f"round {round_}: gaps in {written}"
        assert written and written[-1] >= last_printed, f"round {round_}: committed entries lost"
        assert len(written) % batch == 0, f"round {round_}: a partial transaction is visible"
        for i in range(3):
            check_entry(path, i)
        for i in written:
            check_entry(path, i)
        df = read_metrics(path)
        assert len(df) == 4 * len(models)
        assert df[df.model_id.isin(original.model_id)].reset_index(drop=True).equals(original)
        start = written[-1] + 1
    # the lock died with the writer; a new writer cleans its temporaries and carries on
    ResultStore(path, lock_timeout=2).write("after", {}, "gen", {}, simple())
    assert "after" in list_models(path)
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]


def test_concurrent_writers_serialise_on_the_lock(tmp_path):
    path = tmp_path / "results.h5"
    ResultStore(path).write("w0", {"index": 0}, "gen", {"i": 0}, deterministic_result(0))
    procs = [start_writer(path, 10, 6), start_writer(path, 20, 6, batch=2)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert list_models(path) == sorted(["w0"] + [f"w{i}" for i in (*range(10, 16), *range(20, 26))])
    for i in (0, 10, 15, 20, 25):
        check_entry(path, i)


def test_second_writer_times_out_naming_the_lock_file(tmp_path):
    path = tmp_path / "results.h5"
    first, second = ResultStore(path), ResultStore(path, lock_timeout=0.2)
    with first.transaction():
        first.write("m0", {}, "gen", {}, simple())
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=f"lock file {path}.lock") as info:
            second.write("m1", {}, "gen", {}, simple())
        assert time.monotonic() - t0 >= 0.2 and f"pid {os.getpid()}" in str(info.value)
    second.write("m1", {}, "gen", {}, simple())  # free again after the first commit
    assert list_models(path) == ["m0", "m1"]


def test_commits_without_o_tmpfile_or_hard_links_leave_nothing_behind(tmp_path, monkeypatch):
    """Where /proc or linkat is missing the writer falls back to a named temporary (then a rename where the file
    system has no hard links): the store works the same and no ``.tmp`` stays."""
    import errno as _errno

    import probe.store.segments as segments

    def no_linkat(fd, target):
        raise OSError(_errno.ENOENT, "no /proc")

    monkeypatch.setattr(segments, "_link_tmpfile", no_linkat)
    path = tmp_path / "results.h5"
    store = ResultStore(path)
    for i in range(3):
        store.write(f"m{i}", {}, "gen", {}, simple(float(i)))
    real_link = segments.os.link

    def no_hard_links(src, dst, *args, **kwargs):
        raise OSError(_errno.EPERM, "no hard links")

    monkeypatch.setattr(segments.os, "link", no_hard_links)
    store.write("m3", {}, "gen", {}, simple(3.0))
    monkeypatch.setattr(segments.os, "link", real_link)
    assert list_models(path) == ["m0", "m1", "m2", "m3"]
    assert read_array(path, "m3", "gen", "psnr").values.tolist() == [3.0, 4.0]
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".tmp"]
