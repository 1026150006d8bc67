"""Typed training configuration, validated at load: an unknown key or a bad value names itself.

A config is a TOML file (or a dict of the same shape)::

    name = "resnet_natural_16"
    seed = 0
    device = "auto"            # auto | cpu | cuda | cuda:N

    [model]
    family = "resnet"          # any registered family (`probe list`)
    size = "tiny"              # tiny | small | paper
    global_residual = true     # other keys are the family's keyword arguments
    # or your own network: arch = "my_arch.py:MyNet" (relative to this file), kwargs = {width = 32},
    # plus its conventions (pad_multiple = 8, output = 0, ...): see probe.models.external

    [data]
    background = "natural"
    n_backgrounds = 16
    patch = 48
    clean_fraction = 0.1       # share of pairs left clean (the co-authors used 10 %)
    # paper B's balanced complexity (probe.data.balance), all off by default:
    # widen_degradation = {type = "rain", preset = "random"}   complexity_band = [0.5, 2.0]   curriculum = 300

    [degradation]              # the training range
    type = "rain"
    preset = "small"

    [train]
    iterations = 300
    batch = 8
    precision = "auto"         # auto = bf16 on CUDA, fp32 on CPU | fp32 | bf16 | fp16 (autocast)
    channels_last = "auto"     # auto = on CUDA for convolutional families | true | false
    compile = false            # torch.compile the training forward

    [eval]                     # the test splits every run is validated (and later probed) on
    n_images = 16
    [eval.splits.id]
    type = "rain"
    preset = "small"
    [eval.splits.ood]
    type = "rain"
    preset = "large"

Python::

    from probe.train.config import TrainConfig
    config = TrainConfig.from_toml("run.toml", overrides=["train.iterations=50"])
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged
    import tomli as tomllib

from probe.errors import ConfigError

LOSSES = ("l1", "l2")
SCHEDULES = ("constant", "cosine", "step")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ModelConfig:
    family: str = "resnet"
    size: str = "tiny"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    background: str = "natural"
    n_backgrounds: int = 16
    patch: int = 48
    clean_fraction: float = 0.1
    background_options: dict[str, Any] = field(default_factory=dict)
    # paper B's remedy 1, balanced complexity (probe.data.balance; off by default)
    widen_degradation: dict[str, Any] = field(default_factory=dict)
    complexity_band: list[float] = field(default_factory=list)
    curriculum: int = 0

    def balance_options(self) -> dict[str, Any]:
        """The balanced-complexity keyword arguments of :class:`probe.data.paired.PairedStream`."""
        return {"widen_degradation": self.widen_degradation, "complexity_band": self.complexity_band,
                "curriculum": self.curriculum}


@dataclass
class OptimConfig:
    iterations: int = 300
    batch: int = 8
    lr: float = 2e-4
    loss: str = "l1"
    schedule: str = "cosine"
    warmup: int = 0
    min_lr_ratio: float = 0.01
    ema: float = 0.0
    grad_clip: float = 0.0
    val_every: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    precision: str = "auto"        # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    channels_last: Any = "auto"    # auto (on CUDA for convolutional families) | true | false
    compile: bool = False          # torch.compile the training forward


@dataclass
class EvalConfig:
    background: str | None = None  # None: the training source's held-out ("test") images
    background_options: dict[str, Any] | None = None
    n_images: int = 16
    patch: int | None = None  # None: the training patch
    seed: int = 12345
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Everything a training run needs; :meth:`to_dict` is what ``run.json`` records."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degradation: dict[str, Any] = field(default_factory=lambda: {"type": "rain", "preset": "small"})
    train: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    axes: dict[str, Any] = field(default_factory=dict)  # grid axis values of this cell (informational)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a train config must be a table, got {type(raw).__name__}")
        raw = copy.deepcopy(dict(raw))
        top = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown(raw, top, source, "")
        for key in ("model", "degradation", "axes"):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise ConfigError(f"{source}: [{key}] must be a table, got {raw[key]!r}")
        model_raw = dict(raw.pop("model", {}) or {})
        if model_raw.get("kwargs") is not None and not isinstance(model_raw["kwargs"], dict):
            raise ConfigError(f"{source}: model.kwargs must be a table, got {model_raw['kwargs']!r}")
        model_kwargs = dict(model_raw.pop("kwargs", {}) or {})
        family = model_raw.pop("family", "external" if "arch" in model_raw else ModelConfig.family)
        size = model_raw.pop("size", "default" if family == "external" else ModelConfig.size)
        if family == "external":  # a user architecture: [model] arch = "FILE.py:Class", kwargs = its arguments
            from probe.models.external import external_model_kwargs

            model_kwargs = external_model_kwargs(model_raw, model_kwargs, source)
            model_raw = {}
        model_kwargs.update(model_raw)  # any other [model] key is a family keyword argument
        config = cls(
            name=raw.pop("name", cls.name),
            seed=raw.pop("seed", cls.seed),
            device=raw.pop("device", cls.device),
            model=ModelConfig(family=family, size=size, kwargs=model_kwargs),
            data=_section(DataConfig, raw.pop("data", {}), source, "data"),
            degradation=dict(raw.pop("degradation", None) or {"type": "rain", "preset": "small"}),
            train=_section(OptimConfig, raw.pop("train", {}), source, "train"),
            eval=_section(EvalConfig, raw.pop("eval", {}), source, "eval"),
            axes=dict(raw.pop("axes", {}) or {}),
        )
        config.validate(source)
        return config

    @classmethod
    def from_toml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        path = Path(path)
        raw = load_toml(path)
        for item in overrides or []:
            key, value = parse_override(item)
            set_dotted(raw, key, value)
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "config") -> None:
        from probe.data.backgrounds import BACKGROUNDS
        from probe.models import FAMILIES

        _check(isinstance(self.name, str) and self.name != "", source, "name", self.name, "a non-empty string")
        _check(_is_int(self.seed) and self.seed >= 0, source, "seed", self.seed, "an integer >= 0")
        _check(isinstance(self.device, str) and (self.device in ("auto", "cpu", "cuda", "mps")
                                                  or self.device.startswith("cuda:")),
               source, "device", self.device, "auto, cpu, cuda, cuda:N or mps")
        if self.model.family not in FAMILIES:
            raise ConfigError(f"{source}: model.family = {self.model.family!r} is not a registered family; "
                              f"allowed: {', '.join(FAMILIES.names())}")
        sizes = getattr(FAMILIES.get(self.model.family), "sizes", {})
        _check(isinstance(self.model.size, str) and self.model.size in sizes, source, "model.size",
               self.model.size, ", ".join(sizes))
        d = self.data
        if d.background not in BACKGROUNDS:
            raise ConfigError(f"{source}: data.background = {d.background!r} is not a registered source; "
                              f"allowed: {', '.join(BACKGROUNDS.names())}")
        _check(_is_int(d.n_backgrounds) and d.n_backgrounds >= 1, source, "data.n_backgrounds",
               d.n_backgrounds, "an integer >= 1")
        _check(_is_int(d.patch) and 8 <= d.patch <= 4096, source, "data.patch", d.patch,
               "an integer in [8, 4096]")
        _check(_is_num(d.clean_fraction) and 0 <= d.clean_fraction < 1, source, "data.clean_fraction",
               d.clean_fraction, "a number in [0, 1)")
        _check(isinstance(d.background_options, dict), source, "data.background_options",
               d.background_options, "a table")
        from probe.data.balance import check_options

        try:
            check_options(d.widen_degradation, d.complexity_band, d.curriculum)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        t = self.train
        _check(_is_int(t.iterations) and t.iterations >= 1, source, "train.iterations", t.iterations,
               "an integer >= 1")
        _check(_is_int(t.batch) and t.batch >= 1, source, "train.batch", t.batch, "an integer >= 1")
        _check(_is_num(t.lr) and t.lr > 0, source, "train.lr", t.lr, "a number > 0")
        _check(isinstance(t.loss, str) and t.loss in LOSSES, source, "train.loss", t.loss, ", ".join(LOSSES))
        _check(isinstance(t.schedule, str) and t.schedule in SCHEDULES, source, "train.schedule", t.schedule,
               ", ".join(SCHEDULES))
        _check(_is_int(t.warmup) and t.warmup >= 0, source, "train.warmup", t.warmup, "an integer >= 0")
        _check(_is_num(t.min_lr_ratio) and 0 <= t.min_lr_ratio <= 1, source, "train.min_lr_ratio",
               t.min_lr_ratio, "a number in [0, 1]")
        _check(_is_num(t.ema) and 0 <= t.ema < 1, source, "train.ema", t.ema, "a number in [0, 1) (0 = off)")
        _check(_is_num(t.grad_clip) and t.grad_clip >= 0, source, "train.grad_clip", t.grad_clip,
               "a number >= 0 (0 = off)")
        _check(t.precision in PRECISIONS, source, "train.precision", t.precision, ", ".join(PRECISIONS))
        _check(t.channels_last in ("auto", True, False), source, "train.channels_last", t.channels_last,
               "auto, true or false")
        _check(isinstance(t.compile, bool), source, "train.compile", t.compile, "true or false")
        for key in ("val_every", "checkpoint_every", "log_every"):
            value = getattr(t, key)
            _check(_is_int(value) and value >= 0, source, f"train.{key}", value, "an integer >= 0 (0 = off)")
        e = self.eval
        if e.background is not None and e.background not in BACKGROUNDS:
            raise ConfigError(f"{source}: eval.background = {e.background!r} is not a registered source; "
                              f"allowed: {', '.join(BACKGROUNDS.names())}")
        _check(_is_int(e.n_images) and e.n_images >= 1, source, "eval.n_images", e.n_images, "an integer >= 1")
        _check(e.patch is None or (_is_int(e.patch) and e.patch >= 8), source, "eval.patch", e.patch,
               "an integer >= 8")
        _check(_is_int(e.seed) and e.seed >= 0, source, "eval.seed", e.seed, "an integer >= 0")
        _check(isinstance(e.splits, dict), source, "eval.splits", e.splits, "a table of split tables")
        self._check_degradation(self.degradation, source, "degradation")
        for split, spec in e.splits.items():
            _check(isinstance(spec, dict), source, f"eval.splits.{split}", spec, "a degradation table")
            self._check_degradation(spec, source, f"eval.splits.{split}")
        self._check_model(source)

    @staticmethod
    def _check_degradation(spec: dict[str, Any], source: str, where: str) -> None:
        from probe.data.degradations import check_degradation  # cached per distinct spec

        if "type" not in spec:
            raise ConfigError(f"{source}: {where} needs a 'type' (e.g. rain, noise, blur)")
        try:
            check_degradation(spec)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {where}: {exc}") from exc

    def _check_model(self, source: str) -> None:
        try:
            _check_model_spec(self.model.family, self.model.size,
                              json.dumps(self.model.kwargs, sort_keys=True, default=str))
        except ConfigError as exc:
            raise ConfigError(f"{source}: model: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"{source}: model: bad keyword for family {self.model.family!r}: {exc}") from exc


# ---------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=256)
def _check_model_spec(family: str, size: str, kwargs_json: str) -> None:
    """Build the model once per (family, size, kwargs) on the meta device (no memory, no RNG draws): a grid of
    many cells validates quickly, and a huge width or depth is refused without allocating it."""
    import torch

    from probe.models import build

    with torch.device("meta"):
        build(family, size, **json.loads(kwargs_json))


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.iterations=50"`` → ``("train.iterations", 50)``; values parse as TOML, else as strings."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return key.strip(), value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a table")
        node = child
    node[parts[-1]] = value


def _section(cls: type, raw: Any, source: str, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{where}] must be a table, got {raw!r}")
    allowed = {f.name for f in dataclasses.fields(cls)}
    _reject_unknown(raw, allowed, source, f"{where}.")
    return cls(**raw)


def _reject_unknown(raw: dict[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _check(ok: bool, source: str, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {key} = {value!r} is invalid; expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
