"""Read a BasicSR option file (``options/test_X.yml``): the network, its weights, its test sets, its metrics.

Most deraining code bases (Restormer, DRSformer, NAFNet, …) are built on BasicSR and describe a trained
network and its test sets in one YAML. :func:`read_options` reads, without BasicSR installed:

* ``network_g``: ``type`` is the class name, the other keys its keyword arguments. The class is found by
  *reading* (not importing) the repository's ``*_arch.py`` files for ``class TYPE(``; only the file that
  defines it is imported. A file inside a package (``basicsr/archs/x_arch.py``, with relative imports) is
  imported as that package's module with its parent packages' ``__init__`` files *not* run (they import
  BasicSR's data, models and compiled ops, which a network does not need);
* ``path.pretrain_network_g`` (relative paths: against the code root, then the option file's folder) and
  ``path.param_key_g`` (BasicSR's default ``params``) → the weights and their container entry;
* ``datasets.test_*`` / ``val_*`` (``name``, ``dataroot_gt``, ``dataroot_lq``, ``filename_tmpl``) → named
  evaluation splits, paired the way BasicSR's ``paired_paths_from_folder`` pairs them: for every ground-truth
  file, the low-quality file named ``filename_tmpl.format(stem)`` with the low-quality folder's extension;
* ``val.metrics`` (``crop_border``, ``test_y_channel``) → recorded as the code base's metric conventions.

::

    opts = read_options("options/test_Rain100L.yml", code_root="DRSformer")
    opts.arch         # 'basicsr.models.archs.drsformer_arch:DRSformer'; also .kwargs, .weights, .weights_key
    opts.test_sets          # {'Rain100L': ('…/input', '…/target')}
    opts.metrics            # {'psnr': {'crop_border': 0, 'test_y_channel': True}}

Every fault is one :class:`~probe.errors.ConfigError` naming the option file and the key.
"""

from __future__ import annotations

import csv
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ConfigError, DataError

_SKIP_DIRS = {".git", "__pycache__", "node_modules", "experiments", "results", "datasets", "Datasets"}
_MAX_FILES = 5000
_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class BasicSROptions:
    """What an option file says (paths resolved)."""

    path: Path
    name: str
    arch: str  # FILE.py:Class or package.module:Class (the package's root put on sys.path by import)
    kwargs: dict[str, Any]
    weights: Path | None
    weights_key: str
    test_sets: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # split → (lq folder, gt folder)
    filename_tmpl: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_root: Path | None = None

    def conventions(self) -> dict[str, Any]:
        """The code base's metric conventions, for the store: ``{"psnr": {"crop_border": 4, ...}, ...}``."""
        return {k: dict(v) for k, v in self.metrics.items()}


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the option file ({exc.strerror or exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid YAML option file ({' '.join(str(exc).split())})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a BasicSR option file is a YAML mapping, got {type(raw).__name__}")
    return raw


def find_code_root(options: Path) -> Path:
    """The nearest folder above the option file that holds ``*_arch.py`` files (at most 4 levels up)."""
    here = options.resolve().parent
    for folder in [here, *here.parents][:5]:
        if any(_arch_files(folder, limit=1)):
            return folder
    raise ConfigError(f"{options}: no *_arch.py files in the folders above it; pass --code-root REPO")


def _arch_files(root: Path, limit: int = _MAX_FILES):
    count = 0
    stack = [root]
    while stack and count < limit:
        folder = stack.pop()
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink() and entry.name not in _SKIP_DIRS:
                stack.append(entry)
            elif entry.is_file() and entry.name.endswith("_arch.py"):
                count += 1
                yield entry
                if count >= limit:
                    return


def find_class(root: Path, name: str, source: Path) -> Path:
    """The one ``*_arch.py`` file under ``root`` that defines ``class name(``; ConfigError otherwise."""
    pattern = re.compile(rf"^class\s+{re.escape(name)}\s*[(:]", re.MULTILINE)
    files = list(_arch_files(root))
    hits = []
    for path in files:
        try:
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                hits.append(path)
        except OSError:
            continue
    if not hits:
        raise ConfigError(f"{source}: network_g type {name!r} is defined in none of the {len(files)} *_arch.py "
                          f"files under {root} (pass --code-root REPO)")
    if len(hits) > 1:
        preferred = [h for h in hits if "archs" in h.parts]
        if len(preferred) == 1:
            return preferred[0]
        raise ConfigError(f"{source}: network_g type {name!r} is defined in {len(hits)} files: "
                          f"{', '.join(str(h.relative_to(root)) for h in hits[:4])}")
    return hits[0]


def arch_reference(root: Path, file: Path, name: str) -> str:
    """``FILE.py:Class`` for a loose file; for a file inside packages (``__init__.py`` beside it) its dotted
    module name, the parents registered as bare packages (their ``__init__`` not run) and ``root`` importable."""
    parts: list[str] = []
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder != folder.parent:
        parts.insert(0, folder.name)
        folder = folder.parent
    if not parts:
        return f"{file}:{name}"
    base = str(folder)
    if base not in sys.path:
        sys.path.insert(0, base)
    for i in range(1, len(parts) + 1):
        dotted = ".".join(parts[:i])
        existing = sys.modules.get(dotted)
        where = str(folder.joinpath(*parts[:i]))
        if existing is not None and where in list(getattr(existing, "__path__", []) or []):
            continue
        package = types.ModuleType(dotted)
        package.__path__ = [where]  # a bare package: its submodules import, its __init__ does not run
        package.__file__ = None
        sys.modules[dotted] = package
    return f"{'.'.join(parts)}.{file.stem}:{name}"


def _resolve(value: str, roots: list[Path]) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    for root in roots:
        if (root / path).exists():
            return (root / path).resolve()
    return (roots[0] / path).resolve()


def read_options(path: str | Path, code_root: str | Path | None = None) -> BasicSROptions:
    """Parse a BasicSR option file (see the module docstring); nothing is imported yet except bare packages."""
    path = Path(path)
    raw = _load_yaml(path)
    net = raw.get("network_g")
    if not isinstance(net, dict) or not isinstance(net.get("type"), str):
        raise ConfigError(f"{path}: network_g: needs a mapping with 'type' (the architecture class)")
    root = Path(code_root).expanduser().resolve() if code_root is not None else find_code_root(path)
    if not root.is_dir():
        raise ConfigError(f"--code-root {root}: no such folder")
    cls = net["type"]
    file = find_class(root, cls, path)
    arch = arch_reference(root, file, cls)
    kwargs = {str(k): v for k, v in net.items() if k != "type"}
    roots = [root, path.resolve().parent, Path.cwd()]
    paths = raw.get("path") or {}
    if not isinstance(paths, dict):
        raise ConfigError(f"{path}: path: must be a mapping")
    pretrain = paths.get("pretrain_network_g")
    weights = _resolve(str(pretrain), roots) if pretrain else None
    key = paths.get("param_key_g", "params")
    if not isinstance(key, str):
        raise ConfigError(f"{path}: path.param_key_g: must be a string, got {key!r}")
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise ConfigError(f"{path}: datasets: must be a mapping")
    test_sets, templates = {}, {}
    for phase, spec in datasets.items():
        if not str(phase).startswith(("test", "val")) or not isinstance(spec, dict):
            continue
        missing = [k for k in ("dataroot_gt", "dataroot_lq") if not spec.get(k)]
        if missing:
            raise ConfigError(f"{path}: datasets.{phase}: needs {' and '.join(missing)}")
        split = re.sub(r"[^\w.+-]+", "_", str(spec.get("name") or phase)).strip("._") or str(phase)
        if split in test_sets:
            split = f"{split}_{phase}"
        test_sets[split] = (_resolve(str(spec["dataroot_lq"]), roots), _resolve(str(spec["dataroot_gt"]), roots))
        templates[split] = str(spec.get("filename_tmpl", "{}"))
    metrics = {}
    val = raw.get("val") or {}
    for metric, spec in ((val.get("metrics") or {}) if isinstance(val, dict) else {}).items():
        if isinstance(spec, dict):
            metrics[str(metric)] = {"type": spec.get("type", metric), "crop_border": int(spec.get("crop_border", 0)),
                                    "test_y_channel": bool(spec.get("test_y_channel", False))}
    return BasicSROptions(path=path, name=str(raw.get("name") or path.stem), arch=arch, kwargs=kwargs,
                          weights=weights, weights_key=key, test_sets=test_sets, filename_tmpl=templates,
                          metrics=metrics, code_root=root)


def pair_list(lq: Path, gt: Path, template: str, out: Path) -> Path:
    """Write ``out`` (a CSV ``input,target`` of absolute paths) pairing ``lq`` and ``gt`` as BasicSR's
    ``paired_paths_from_folder`` does; DataError naming the folder for a missing partner or folder."""
    for folder, key in ((lq, "dataroot_lq"), (gt, "dataroot_gt")):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder ({key})")
    lq_files = {p.stem: p for p in sorted(lq.iterdir()) if p.suffix.lower() in _IMAGE_EXT}
    gt_files = [p for p in sorted(gt.iterdir()) if p.suffix.lower() in _IMAGE_EXT]
    if not gt_files:
        raise DataError(f"{gt}: no images (dataroot_gt)")
    rows = []
    for target in gt_files:
        stem = template.format(target.stem)
        source = lq_files.get(stem)
        if source is None:
            raise DataError(f"{lq}: no input {stem}.* for {target.name} (dataroot_lq, filename_tmpl {template!r})")
        rows.append((str(source.resolve()), str(target.resolve())))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "target"])
        writer.writerows(rows)
    return out
