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


def hard_children(group: h5py.Group, path: str | Path) -> list[str]:
    """The names of ``group``'s links, refusing any that is not a hard link (one C-level pass, nothing opened)."""
    names: list[str] = []
    bad: list[tuple[str, int]] = []

    def visit(name: bytes, info: Any) -> None:
        text = name.decode("utf-8", "surrogateescape")
        names.append(text)
        if info.type != h5py.h5l.TYPE_HARD:
            bad.append((text, info.type))

    group.id.links.iterate(visit, info=True)
    if bad:
        name, kind = bad[0]
        where = f"{group.name.rstrip('/')}/{name}".lstrip("/")
        link = group.get(name, getlink=True)
        what = (f"an external link to {link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink)
                else f"a soft link to {link.path}" if isinstance(link, h5py.SoftLink) else f"a link of type {kind}")
        raise _refuse(path, where, what)
    return sorted(names)


def check_tree(group: h5py.Group, path: str | Path) -> None:
    """Refuse soft/external links and unsafe datasets anywhere under ``group`` (links are never followed)."""
    bad: list[str] = []

    def visit(name: bytes, info: Any) -> None:
        if info.type != h5py.h5l.TYPE_HARD and not bad:
            bad.append(name.decode("utf-8", "surrogateescape"))

    group.id.links.visit(visit, info=True)
    if bad:
        parent, _, _leaf = bad[0].rpartition("/")
        hard_children(group[parent] if parent else group, path)  # raises, naming the link
        raise _refuse(path, f"{group.name}/{bad[0]}", "not a hard link")

    def objects(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            check_dataset(obj, path, obj.name.lstrip("/"))

    group.visititems(objects)
