"""Stores are not trusted blindly (issue 25 item 3): every part read is checked against the checksum its writer
stored; objects probe never writes (external and soft links, virtual datasets, external raw storage, foreign
filters) are refused in one line naming the store and the object; schema-1 stores are read, marked unverified."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import xarray as xr

from probe.errors import StoreError
from probe.store import ResultStore, list_entries, read_array, read_metrics, read_model_info, store_status

ROOT = Path(__file__).resolve().parent.parent


def result(value: float) -> SimpleNamespace:
    arr = xr.DataArray(np.array([value, value + 1]), dims=("split",), coords={"split": ["id", "ood"]})
    return SimpleNamespace(arrays={"psnr": arr}, metrics=[{"split": "id", "metric": "psnr", "value": value},
                                                          {"split": "ood", "metric": "psnr", "value": value + 1}])


def small_store(path: Path, n: int = 2) -> Path:
    store = ResultStore(path)
    with store.transaction():
        for i in range(n):
            store.write(f"m{i}", {"family": "resnet", "i": i}, "gen", {}, result(20.0 + i), sha256=f"{i:064x}")
    return path


def _entry_path(f: h5py.File, model_id: str = "m0") -> str:
    (key,) = list(f[f"models/{model_id}/probes/gen"])
    return f"models/{model_id}/probes/gen/{key}"


# ------------------------------------------------------------------------------------------ checksums


def test_changed_bytes_in_a_metric_column_are_damage_naming_the_entry(tmp_path):
    path = small_store(tmp_path / "results.h5")
    with h5py.File(path, "r+") as f:  # the security_21 / issue-25 situation: 1e300 written over a value
        entry = _entry_path(f)
        f[f"{entry}/metrics/value"][0] = 1e300
    with pytest.raises(StoreError) as info:
        read_metrics(path)
    message = str(info.value)
    assert str(path) in message and entry in message and "metrics" in message and "damaged" in message
    assert "\n" not in message
    assert read_array(path, "m1", "gen", "psnr").values.tolist() == [21.0, 22.0]  # the other entry still reads


@pytest.mark.parametrize("part", ["array", "info", "params", "attr"])
def test_every_part_is_verified(tmp_path, part):
    path = small_store(tmp_path / "results.h5")
    with h5py.File(path, "r+") as f:
        entry = _entry_path(f)
        if part == "array":
            f[f"{entry}/arrays/psnr"][1] = 99.0
        elif part == "info":
            del f["models/m0/info"]
            f.create_dataset("models/m0/info", data=json.dumps({"family": "forged"}), dtype=h5py.string_dtype())
        elif part == "params":
            del f[f"{entry}/params"]
            f.create_dataset(f"{entry}/params", data='{"forged":1}', dtype=h5py.string_dtype())
        else:
            f[entry].attrs["sha256"] = "f" * 64
    with pytest.raises(StoreError, match="damaged"):
        if part == "array":
            read_array(path, "m0", "gen", "psnr")
        elif part == "info":
            read_model_info(path, "m0")
        else:
            list_entries(path)


def test_a_schema_1_store_is_read_and_marked_unverified(tmp_path):
    path = small_store(tmp_path / "results.h5")
    with h5py.File(path, "r+") as f:  # what probe wrote before checksums: schema 1, no checksum attributes
        f.attrs["schema_version"] = 1
        f.visititems(lambda _n, obj: obj.attrs.__delitem__("checksum") if "checksum" in obj.attrs else None)
    df = read_metrics(path)
    assert sorted(df["value"]) == [20.0, 21.0, 21.0, 22.0]
    assert store_status(path) == {"schema_version": 1, "entries": 2, "unverified": 2}
    assert not list_entries(path)["verified"].any()
    ResultStore(path).write("m9", {}, "gen", {}, result(5.0))  # a new result on top is verified
    entries = list_entries(path).set_index("model_id")["verified"].to_dict()
    assert entries == {"m0": False, "m1": False, "m9": True}
    ResultStore(path).compact()  # folded into one schema-2 file: the old entries stay marked unverified
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == 2 and f[_entry_path(f)].attrs["checksum"] == "unverified"
    assert list_entries(path).set_index("model_id")["verified"].to_dict() == entries
    assert store_status(path)["unverified"] == 2


def test_a_schema_2_part_without_its_checksum_is_damage(tmp_path):
    path = small_store(tmp_path / "results.h5")
    with h5py.File(path, "r+") as f:
        del f[f"{_entry_path(f)}/metrics"].attrs["checksum"]
    with pytest.raises(StoreError, match="checksum is missing"):
        read_metrics(path)


# ---------------------------------------------------------------------------- objects probe never writes


def _value_column(f: h5py.File) -> str:
    return f"{_entry_path(f)}/metrics/value"


def _replace(f: h5py.File, name: str, make) -> None:
    attrs = dict(f[name].attrs)
    n = f[name].shape[0]
    del f[name]
    ds = make(name, n)
    ds.attrs.update(attrs)


@pytest.mark.parametrize("kind", ["external link", "soft link", "virtual dataset", "external raw storage",
                                  "user-defined filter"])
def test_objects_probe_never_writes_are_refused_before_reading(tmp_path, kind):
    path = small_store(tmp_path / "results.h5")
    outside = tmp_path / "outside.h5"
    shutil.copyfile(path, outside)
    with h5py.File(path, "r+") as f:
        if kind == "external link":
            del f["models/m1"]
            f["models/m1"] = h5py.ExternalLink(str(outside), "/models/m1")
        elif kind == "soft link":
            entry = _entry_path(f, "m0")
            del f[f"{entry}/params"]
            f[f"{entry}/params"] = h5py.SoftLink(f"/{_entry_path(f, 'm1')}/params")
        elif kind == "virtual dataset":
            def vds(name, n):
                layout = h5py.VirtualLayout(shape=(n,), dtype="f8")
                layout[:] = h5py.VirtualSource(str(tmp_path / "missing.h5"), "x", shape=(n,))
                return f.create_virtual_dataset(name, layout, fillvalue=0.0)
            _replace(f, _value_column(f), vds)
        elif kind == "external raw storage":
            np.array([42.0, 43.0]).tofile(tmp_path / "values.bin")
            _replace(f, _value_column(f), lambda name, n: f.create_dataset(
                name, shape=(n,), dtype="<f8", external=[(str(tmp_path / "values.bin"), 0, 8 * n)]))
        else:
            def filtered(name, n):
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_chunk((n,))
                dcpl.set_filter(32001, h5py.h5z.FLAG_OPTIONAL)  # a plugin filter id (blosc), not probe's
                space = h5py.h5s.create_simple((n,))
                dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.IEEE_F64LE, space, dcpl=dcpl)
                return h5py.Dataset(dsid)
            _replace(f, _value_column(f), filtered)
    for read in (read_metrics, list_entries, store_status):
        with pytest.raises(StoreError) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and "never writes" in message and "\n" not in message
        assert kind.split()[0] in message.replace("user-defined HDF5 filter", "user-defined filter")


def test_the_cli_report_refuses_a_store_with_an_external_link_in_one_line(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    path = small_store(folder / "results.h5")
    outside = tmp_path / "outside.h5"
    shutil.copyfile(path, outside)
    with h5py.File(path, "r+") as f:
        del f["models/m0"]
        f["models/m0"] = h5py.ExternalLink(str(outside), "/models/m0")
    r = subprocess.run([sys.executable, "-m", "probe.cli", "--quiet", "report", str(folder)], capture_output=True,
                       text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "external link" in r.stderr and str(path) in r.stderr
