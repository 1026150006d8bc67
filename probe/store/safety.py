"""Refuse what probe never writes: HDF5 objects that make a store read *other* files or run plugins.

A store received from someone else (a collaborator, a paper's supplement) is untrusted input. HDF5 can make
reading it touch other files on the reader's disk or run code:

* **external links** and **soft links** (a group or dataset that lives in another file, or elsewhere in this one),
* **virtual datasets** (values mapped from other files; a missing source reads as fill values, i.e. zeros),
* **external raw storage** (a dataset whose bytes are in an outside binary file),
* **filters** other than the ones probe uses (gzip, shuffle, fletcher32): user-defined filters are loaded as
  plugins from ``HDF5_PLUGIN_PATH``.

:func:`check_tree` walks every link of a file *without following it* and raises one
:class:`~probe.errors.StoreError` line naming the store and the object (h5py issue #2891, HDFGroup/hdf5 #5088).
The check reads only metadata; it runs before any value is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from probe.errors import StoreError

#: HDF5 filter ids probe writes or accepts: deflate (gzip), shuffle, fletcher32.
ALLOWED_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
                   h5py.h5z.FILTER_FLETCHER32: "fletcher32"}


def _refuse(path: Any, name: str, what: str) -> StoreError:
    return StoreError(f"results store {path}: object /{name} is {what}, which probe never writes; refusing to "
                      "read it (it could pull data from other files); rebuild the store with `probe measure`")


def check_dataset(ds: h5py.Dataset, path: Any, name: str) -> None:
    """Raise :class:`StoreError` if ``ds`` is virtual, stored outside the file or uses a foreign filter."""
    if ds.is_virtual:
        raise _refuse(path, name, "a virtual dataset")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise _refuse(path, name, "a dataset with external raw storage")
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in ALLOWED_FILTERS:
            raise _refuse(path, name, f"a dataset with the user-defined HDF5 filter {code}")


def check_tree(handle: h5py.File | h5py.Group, path: str | Path) -> None:
    """Walk every link under ``handle`` without following any; refuse soft/external links and unsafe datasets."""
    problems: list[StoreError] = []

    def visit(name: str, link: Any) -> Any:
        if isinstance(link, h5py.ExternalLink):
            problems.append(_refuse(path, name, f"an external link to {link.filename}:{link.path}"))
            return True
        if isinstance(link, h5py.SoftLink):
            problems.append(_refuse(path, name, f"a soft link to {link.path}"))
            return True
        if not isinstance(link, h5py.HardLink):
            problems.append(_refuse(path, name, f"a {type(link).__name__}"))
            return True
        obj = handle.get(name)
        if isinstance(obj, h5py.Dataset):
            try:
                check_dataset(obj, path, name)
            except StoreError as exc:
                problems.append(exc)
                return True
        return None

    handle.visititems_links(visit)
    if problems:
        raise problems[0]
