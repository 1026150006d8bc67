"""HDF5 result stores: one file per study, a single copy-on-write writer, and tidy readers.

The layout is documented in ``docs/store.md`` (readable with plain h5py)::

    from probe.store import ResultStore, read_metrics, read_array
    store = ResultStore("reports/derain_complexity/results.h5")
    store.write("resnet-n16-s0", {"family": "resnet", "n_backgrounds": 16}, "generalization",
                {"splits": ["id", "ood"]}, result)      # result: anything with .arrays and .metrics
    df = read_metrics(store.path)                        # tidy: model × probe × split × metric (+ info)
    psnr = read_array(store.path, "resnet-n16-s0", "generalization", "psnr")   # xarray.DataArray
"""

from __future__ import annotations

from probe.store.identity import eval_identity
from probe.store.keys import ContentKey
from probe.store.readers import (
    list_entries,
    list_models,
    read_array,
    read_metrics,
    read_model_info,
    store_status,
)
from probe.store.schema import SCHEMA_VERSION, entry_key
from probe.store.writer import ResultStore

__all__ = ["SCHEMA_VERSION", "ContentKey", "ResultStore", "entry_key", "eval_identity", "list_entries",
           "list_models", "read_array", "read_metrics", "read_model_info", "store_status"]
