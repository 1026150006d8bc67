"""Import a user's network class from ``FILE.py:Class`` or ``package.module:Class`` and build it.

::

    from probe.models.arch import import_arch, build_arch
    cls = import_arch("third_party/restormer_arch.py:Restormer")   # the file's folder is on sys.path meanwhile
    net = build_arch("basicsr.archs.swinir_arch:SwinIR", {"upscale": 1, "img_size": 64})
    net = build_arch("prenet.py:PReNet", {"recurrent_iter": 6}, style="namespace")  # PReNet(Namespace(...))
    net = build_arch("models.py:make_model", {"width": 16})                       # a factory function

Any ``torch.nn.Module`` subclass works, or a function returning one (a *factory*); no probe base class is
needed. The network is built for real, on the CPU, exactly as its own code builds it (no meta device, no
global default device or dtype), so constructors that compute with tensors (``.item()`` on a linspace of
drop-path rates, as SwinIR and Uformer do) and modules created in default arguments at import time work.

Constructor styles (``style`` / ``--arch-args`` / the card's ``arch_args``):

* ``"kwargs"`` (default): ``Class(**kwargs)``;
* ``"namespace"``: ``Class(argparse.Namespace(**kwargs))``, for code bases whose networks take their
  command-line settings object (``opt.recurrent_iter``);
* ``"dict"``: ``Class(kwargs)``, for those that take an options dictionary (``opt["network_g"]``).

Any exception raised by the user's code at import or construction (``AssertionError``, ``ValueError``,
``ImportError`` …) becomes one :class:`~probe.errors.ConfigError` naming the file, the class and the
exception (the original is chained: ``probe --debug`` shows its traceback). **Importing a file runs its code**
(as ``python FILE.py`` would): only pass files you trust. Weights are never unpickled (see
:mod:`probe.models.containers`). While a file is imported, its folder is first on ``sys.path``, so sibling
imports (``from .common import ...`` is not possible in a loose file, but ``from common import ...`` is)
work; ``code_root`` (``--code-root REPO``) puts a repository folder before it, for package-style imports
(RCDNet's ``src/model/rcdnet.py`` does ``from model import common``: ``code_root = src``). A
``ModuleNotFoundError`` names a matching folder above the file (pass it as ``--code-root``) or, for a
module that is not local, the ``pip install`` of the network's own requirement. The module is registered
under a name derived from the file's absolute path, so two different files named ``arch.py`` never collide.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from probe.errors import ConfigError, one_line


def split_arch(arch: Any) -> tuple[str, str]:
    """``"FILE.py:Class"`` / ``"pkg.mod:Class"`` → (module part, class name); ConfigError if malformed."""
    if not isinstance(arch, str) or ":" not in arch:
        raise ConfigError(f"arch {arch!r}: expected FILE.py:Class or package.module:Class")
    where, _, name = arch.rpartition(":")
    if not where or not name.isidentifier():
        raise ConfigError(f"arch {arch!r}: expected FILE.py:Class or package.module:Class")
    return where, name


def _import_file(path: Path, code_root: Path | None = None) -> Any:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"arch file {path}: no such file")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"probe_user_arch_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"arch file {path}: not importable as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _on_path([str(path.parent)] + ([str(code_root)] if code_root is not None else [])):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # user code: e.g. an argparse parse_args() at import exits
        sys.modules.pop(module_name, None)
        raise ConfigError(f"arch file {path}: importing it failed: {type(exc).__name__}: "
                          f"{one_line(exc) or '(no message)'}{missing_module_hint(exc, path)} "
                          "(probe --debug shows the traceback)") from exc
    return module


@contextmanager
def _on_path(folders: list[str]) -> Iterator[None]:
    """``folders`` first on ``sys.path`` (the last given first of all) while the block runs, then removed."""
    for folder in folders:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        for folder in folders:
            try:
                sys.path.remove(folder)
            except ValueError:  # pragma: no cover - the user's file removed it itself
                pass


#: import name → pip distribution, where they differ (the hint names what to install).
_PIP_NAMES = {"cv2": "opencv-python", "skimage": "scikit-image", "PIL": "Pillow", "yaml": "PyYAML",
              "sklearn": "scikit-learn", "timm": "timm", "mmcv": "mmcv", "kornia": "kornia"}


def _local_module(name: str, path: Path, levels: int = 3) -> Path | None:
    """The folder above ``path``'s own (up to ``levels`` up) that holds a folder or file ``name``, else None."""
    for folder in list(path.parents)[1:levels + 1]:
        if (folder / name).is_dir() or (folder / f"{name}.py").is_file():
            return folder
    return None


def missing_module_hint(exc: BaseException, path: Path | None = None) -> str:
    """The hint after a ``ModuleNotFoundError`` raised while importing the arch file ``path`` ("" otherwise):
    a local package above the file (pass ``--code-root`` that folder), else a dependency to install."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    top = exc.name.split(".")[0]
    folder = _local_module(top, path) if path is not None else None
    if folder is not None:
        kind = f"a folder {top!r}" if (folder / top).is_dir() else f"a file '{top}.py'"
        return f" — {kind} is in {folder}: pass --code-root {folder} (code_root in a model card)"
    try:
        installed = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:  # the package is there, a part of it is not: no install advice
        return ""
    return f" (install the network's own requirements: pip install {_PIP_NAMES.get(top, top)})"


def code_root_path(code_root: str | Path | None) -> Path | None:
    """``code_root`` as an absolute folder (None stays None); ConfigError if it is not a folder."""
    if code_root is None:
        return None
    root = Path(code_root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"--code-root {root}: no such folder")
    return root


def import_arch(arch: str, base: str | Path | None = None, code_root: str | Path | None = None) -> Any:
    """The class (or factory function) named by ``arch``; a relative ``FILE.py`` is taken relative to ``base``
    (default: cwd). ``code_root`` (a repository folder) is first on ``sys.path`` while it is imported, for
    package-style imports (``from model import common``). ConfigError if it is neither an ``nn.Module``
    subclass nor a function, or if importing it fails (a missing module is named with a hint)."""
    where, name = split_arch(arch)
    root = code_root_path(code_root)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        module = _import_file(path, root)
    else:
        try:
            with _on_path([str(root)] if root is not None else []):
                module = importlib.import_module(where)
        except Exception as exc:
            raise ConfigError(f"arch {arch!r}: cannot import module {where!r}: "
                              f"{type(exc).__name__}: {one_line(exc)}{missing_module_hint(exc)}") from exc
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                       and v.__module__ == module.__name__)
        raise ConfigError(f"arch {arch!r}: no class {name!r} in {where}; nn.Module classes there: "
                          f"{', '.join(found) or 'none'}")
    if inspect.isclass(cls) and issubclass(cls, nn.Module) or inspect.isfunction(cls):
        return cls
    raise ConfigError(f"arch {arch!r}: {name} is not a torch.nn.Module subclass nor a function returning one")


def parse_kwargs(value: Any, what: str = "--arch-kwargs") -> dict[str, Any]:
    """A JSON object (text) or a mapping → dict; ConfigError naming ``what`` otherwise."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{what}: not valid JSON ({exc.msg} at column {exc.colno}): {value!r}") from exc
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: must be a JSON object of keyword arguments, got {value!r}")
    return {str(k): v for k, v in value.items()}


STYLES = ("kwargs", "namespace", "dict")


def constructor_args(kwargs: Mapping[str, Any] | None, style: str = "kwargs") -> tuple[tuple, dict[str, Any]]:
    """(positional, keyword) arguments of the constructor for ``style`` (see the module docstring)."""
    import argparse

    kwargs = dict(kwargs or {})
    if style == "kwargs":
        return (), kwargs
    if style == "namespace":
        return (argparse.Namespace(**kwargs),), {}
    if style == "dict":
        return (kwargs,), {}
    raise ConfigError(f"arch_args: must be one of {', '.join(STYLES)}, got {style!r}")


def build_arch(arch: str, kwargs: Mapping[str, Any] | None = None, base: str | Path | None = None,
               style: str = "kwargs", code_root: str | Path | None = None) -> nn.Module:
    """Build ``arch`` for real on the CPU with ``kwargs`` in constructor ``style``.

    Raises :class:`ConfigError` in one line naming the class and the exception for any error raised by the
    constructor (or a factory returning something that is not an ``nn.Module``).
    """
    cls = import_arch(arch, base, code_root)
    args, kw = constructor_args(kwargs, style)
    shown = {"kwargs": f"**{dict(kwargs or {})}", "namespace": f"Namespace(**{dict(kwargs or {})})",
             "dict": f"{dict(kwargs or {})}"}[style]
    where = getattr(inspect.getmodule(cls), "__file__", None) or arch.rpartition(":")[0]
    try:
        net = cls(*args, **kw)
    except TypeError as exc:
        raise ConfigError(f"arch {arch!r}: {cls.__name__}({shown}) failed: {one_line(exc)} "
                          "(pass --arch-kwargs / [model] kwargs, or --arch-args namespace|dict)") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code: one line, the traceback with --debug
        raise ConfigError(f"arch {arch!r} ({where}): {cls.__name__}({shown}) raised "
                          f"{type(exc).__name__}: {one_line(exc) or '(no message)'} (probe --debug shows the "
                          "traceback)") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"arch {arch!r}: {cls.__name__}(...) returned {type(net).__name__}, not a "
                          "torch.nn.Module")
    return net
