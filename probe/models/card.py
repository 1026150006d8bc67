"""Model cards: one TOML file that says how to build, load and call a network, so ``probe measure card.toml``
works with no other option.

.. code-block:: toml

    name = "Restormer (official, rain13k)"    # display name in the report (default: the file's stem)
    arch = "restormer_arch.py:Restormer"       # FILE.py:Class (relative to the card) or package.module:Class
    weights = "deraining.pth"                  # relative to the card
    arch_args = "kwargs"                       # or "namespace" (Class(Namespace(**kwargs))), "dict" (Class(kwargs))
    code_root = "src"                          # first on sys.path while arch is imported (from model import ...)
    output = "1.-1"                            # dotted path of the restored image (default: checked, reported)
    output_is = "image"                        # or "layer" (default: checked, reported)
    input_range = 1                            # or 255
    pad_multiple = 8                           # pad H, W to a multiple (reflect), crop back
    pad_mode = "reflect"                       # or "zero"
    tile = 256                                 # run large images tile by tile (optional)
    tile_overlap = 32
    dtype = "float32"                          # or "keep" (the checkpoint's own precision)
    strict = true
    allow_missing = []                         # fnmatch patterns of tensors that may keep initial values
    weights_key = "params"                     # the checkpoint entry to take (default: params_ema, params, …)
    layers = ["encoder_level1", "latent"]      # probe points (default: the top-level blocks)
    eval_layout = "side_by_side"               # layout of the --eval-folder splits (or a table split = layout;
                                               # default: detected, docs/test-sets.md)
    [kwargs]                                   # the constructor's keyword arguments
    dim = 48

Instead of ``arch``, ``family`` (+ ``size``) names one of probe's own families. Any other key, or a value of
the wrong type, is one :class:`~probe.errors.ConfigError` naming the card and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ConfigError

_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "arch": (str,), "weights": (str,), "family": (str,), "size": (str,), "kwargs": (dict,),
    "output": (int, str), "output_is": (str,), "input_range": (int, float), "pad_multiple": (int,),
    "pad_mode": (str,), "tile": (int,), "tile_overlap": (int,), "dtype": (str,), "strict": (bool,),
    "allow_missing": (list,), "layers": (list,), "max_layers": (int,), "eval_layout": (str, dict),
    "arch_args": (str,), "weights_key": (str,), "code_root": (str,),
}
#: Card keys that are the external family's calling conventions.
CONVENTIONS = ("output", "output_is", "input_range", "pad_multiple", "pad_mode", "tile", "tile_overlap",
               "layers", "max_layers", "arch_args", "code_root")


@dataclass
class ModelCard:
    """A parsed model card (paths resolved against the card's folder)."""

    path: Path
    name: str
    weights: Path
    arch: str | None = None
    family: str | None = None
    size: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    strict: bool = True
    allow_missing: list[str] = field(default_factory=list)
    eval_layout: str | dict[str, str] | None = None
    weights_key: str | None = None

    def load(self, device: str = "cpu", **overrides: Any) -> Any:
        """``probe.load_model`` with the card's settings (``overrides``: conventions given on the CLI)."""
        from probe.models.checkpoint import load_model

        conventions = {**self.conventions, **{k: v for k, v in overrides.items() if v is not None}}
        if self.arch is not None:
            return load_model(self.weights, arch=self.arch, arch_kwargs=self.kwargs, device=device,
                              strict=self.strict, allow_missing=self.allow_missing or None, dtype=self.dtype,
                              weights_key=self.weights_key, **conventions)
        return load_model(self.weights, family=self.family, size=self.size, device=device, strict=self.strict,
                          allow_missing=self.allow_missing or None, dtype=self.dtype, **self.kwargs)


def read_card(path: str | Path) -> ModelCard:
    """Parse and validate a model card; ConfigError naming the file and key on any fault."""
    import tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the model card ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML model card ({exc})") from exc
    for key, value in raw.items():
        if key not in _TYPES:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: {', '.join(_TYPES)}")
        types = _TYPES[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{path}: {key!r} must be a {want}, got {value!r}")
    if "weights" not in raw:
        raise ConfigError(f"{path}: 'weights' is required (the checkpoint file, relative to the card)")
    if ("arch" in raw) == ("family" in raw):
        raise ConfigError(f"{path}: give exactly one of 'arch' (your network class) or 'family' (probe's own)")
    base = path.parent
    weights = Path(raw["weights"]).expanduser()
    weights = weights if weights.is_absolute() else base / weights
    arch = raw.get("arch")
    if arch is not None:
        where, _, cls = arch.rpartition(":")
        if where.endswith(".py") and not Path(where).expanduser().is_absolute():
            arch = f"{(base / where).resolve()}:{cls}"
    conventions = {k: raw[k] for k in CONVENTIONS if k in raw}
    if "code_root" in conventions:  # relative to the card, like arch and weights
        root = Path(conventions["code_root"]).expanduser()
        conventions["code_root"] = str((root if root.is_absolute() else base / root).resolve())
    if arch is None and conventions:
        raise ConfigError(f"{path}: {', '.join(conventions)} only apply with 'arch' (probe families follow "
                          "the probe convention already)")
    for key in ("allow_missing", "layers"):
        if key in raw and not all(isinstance(v, str) for v in raw[key]):
            raise ConfigError(f"{path}: {key!r} must be a list of strings, got {raw[key]!r}")
    if arch is not None:
        from probe.models.external import Conventions

        try:
            Conventions(**conventions)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    if "eval_layout" in raw:  # a layout name, or a table of split = name; the names are checked where used
        layout = raw["eval_layout"]
        values = list(layout.values()) if isinstance(layout, dict) else [layout]
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise ConfigError(f"{path}: 'eval_layout' must be a layout name or a table of split = layout name, "
                              f"got {layout!r}")
    return ModelCard(path=path, name=raw.get("name") or path.stem, weights=weights, arch=arch,
                     eval_layout=raw.get("eval_layout"), family=raw.get("family"), size=raw.get("size"),
                     kwargs=dict(raw.get("kwargs") or {}),
                     conventions=conventions, dtype=raw.get("dtype"), strict=raw.get("strict", True),
                     allow_missing=list(raw.get("allow_missing") or []), weights_key=raw.get("weights_key"))
