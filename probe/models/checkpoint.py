"""Save and load model weights: safetensors with ``probe`` metadata, run directories, foreign ``.pth``.

::

    from probe.models import build
    from probe.models.checkpoint import load_model, save_weights

    model = build("resnet", size="tiny", global_residual=False)
    sha = save_weights(model, "runs/a/model.safetensors")     # sha256 hex of the written file
    same = load_model("runs/a/model.safetensors")             # family/size/kwargs from the file, eval()
    run = load_model("trained_models/study/cell-3")           # a run dir: model.safetensors + run.json
    ext = load_model("net_g_latest.pth", family="unet", size="small")   # BasicSR params_ema / params

Files written by :func:`save_weights` carry string metadata ``probe.format`` ("1"), ``probe.family``,
``probe.size``, ``probe.kwargs`` (JSON) and ``probe.tensors_sha256`` (a digest of the tensor names, dtypes,
shapes and bytes, so a stand-alone file whose data bytes were altered is caught even without run.json).

Every failure is a one-line :class:`~probe.errors.CheckpointError` that starts with the offending file
(an unknown family or size is a :class:`~probe.errors.ConfigError`, also naming the file). Foreign files are
read with ``torch.load(..., weights_only=True)`` only: a pickle holding anything but tensors and plain
containers is refused, never executed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from probe.errors import CheckpointError, ConfigError, one_line
from probe.fsutil import atomic_path
from probe.provenance import sha256_file

FORMAT = "1"
WEIGHTS_NAME = "model.safetensors"
RUN_JSON = "run.json"
_RESERVED = ("probe.format", "probe.family", "probe.size", "probe.kwargs", "probe.tensors_sha256")
_FOREIGN_KEYS = ("params_ema", "params", "state_dict")  # in order of preference
_SHOW = 3  # how many offending keys an error names


# --------------------------------------------------------------------------------------------- saving


def save_weights(model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None) -> str:
    """Write ``model``'s state dict to ``path`` (safetensors, atomically) and return the file's sha256.

    ``model`` needs a ``.spec`` (every :class:`~probe.models.RestorationModel` has one). Extra
    ``metadata`` values are stored as strings (non-strings as JSON); keys starting with ``probe.`` are
    reserved. Tensors are saved as contiguous CPU copies, so tied/shared weights are fine::

        sha = save_weights(build("unet", "tiny"), "runs/u/model.safetensors", {"step": 100})
    """
    from safetensors.torch import save

    spec = getattr(model, "spec", None)
    if not isinstance(spec, Mapping) or not spec.get("family"):
        raise ConfigError(f"save_weights({path}): the model has no .spec with a family; "
                          "build it with probe.models.build()")
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        key = str(key)
        if key.startswith("probe."):
            raise ConfigError(f"save_weights({path}): metadata key {key!r} is reserved")
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    try:
        kwargs_json = json.dumps(dict(spec.get("kwargs") or {}), sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"save_weights({path}): model kwargs are not JSON-serialisable: {exc}") from exc
    tensors = {name: t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
               for name, t in model.state_dict().items()}
    meta.update({
        "probe.format": FORMAT,
        "probe.family": str(spec["family"]),
        "probe.size": str(spec.get("size", "")),
        "probe.kwargs": kwargs_json,
        "probe.tensors_sha256": tensors_digest(tensors),
    })
    path = Path(path)
    data = _canonical_header(save(tensors, metadata=meta))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return sha256_file(path)


def _canonical_header(data: bytes) -> bytes:
    """Rewrite the safetensors JSON header with sorted keys: the library orders metadata keys differently
    from process to process, and identical weights must give an identical file (and SHA-256)."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of ``tensors`` (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------- loading


def load_model(path: str | Path, family: str | None = None, size: str | None = None,
               device: str | torch.device = "cpu", strict: bool = True, *, arch: str | None = None,
               arch_kwargs: Mapping[str, Any] | str | None = None, allow_missing: str | list[str] | None = None,
               dtype: str | None = None, weights_key: str | None = None, **kwargs: Any) -> nn.Module:
    """Load a model in ``eval()`` mode from a run directory, a ``.safetensors`` file or a foreign ``.pth``.

    - run directory: ``model.safetensors`` + ``run.json``; the file's sha256 must equal
      ``run.json["weights_sha256"]`` and the model spec comes from ``run.json["model"]``.
    - ``.safetensors``: the spec comes from the file's ``probe.*`` metadata; a sibling ``run.json`` is
      checked when the file is the run's ``model.safetensors``.
    - anything else (``.pth``/``.pt``/``.ckpt``): ``torch.load(weights_only=True)``; the containers of
      :mod:`probe.models.containers` (BasicSR ``params_ema`` preferred, ``params``, ``state_dict``, ``model``,
      ``net_g`` …); wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``, ``net_g.`` …) are removed, in
      foreign safetensors files too.
    - ``arch="FILE.py:Class"`` (or ``"package.module:Class"``) with ``arch_kwargs`` loads into *your* network
      class (family ``external``; ``kwargs`` then are its conventions: ``output``, ``output_is``,
      ``input_range``, ``pad_multiple``, ``pad_mode``, ``tile``, ``tile_overlap``, ``layers``). Importing the
      file runs its code; the weights are still never unpickled.

    ``arch_args="namespace"`` / ``"dict"`` builds ``Class(Namespace(**arch_kwargs))`` / ``Class(arch_kwargs)``;
    ``arch`` may name a factory function. The network is built for real on the CPU (its own code runs as
    written) and checked once on a synthetic probe batch (:mod:`probe.models.output_select`): which output is
    the restored image and why, whether it predicts the layer, the size it accepts, determinism and in-place
    changes are in ``model.output_choice`` and the load report. ``weights_key`` takes that container entry
    (BasicSR ``param_key_g``) instead of the preferred order.

    ``family`` must agree with a recorded family; ``size`` and ``kwargs`` override recorded ones. Without
    ``size`` the first preset whose shapes fit is used. ``strict=False`` tolerates unexpected keys, but a model
    tensor missing from the file is refused unless its name matches an ``allow_missing`` pattern (fnmatch):
    no load leaves weights at their initial values unannounced. Half-precision weights are loaded as float32
    unless ``dtype="keep"`` (or a dtype name). ``model.load_report`` says what was taken from where::

        model = load_model("trained_models/study/cell-3")      # sha256 verified, in eval mode
        model = load_model("net_g.pth", family="swinir", size="paper", device="cuda")
        net = load_model("net_g_latest.pth", arch="archs/my_arch.py:MyNet", arch_kwargs={"width": 32},
                         pad_multiple=8)
        net.load_report.summary()     # 'loaded 212/212 tensors from net_g_latest.pth (params_ema)'
    """
    from probe.models.containers import float_dtype, read_state, strip_prefixes, to_float32
    from probe.models.loadcheck import check_state, clone_overlapping, load_error

    src = Path(path)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"load_model({src}): invalid device {device!r}") from exc
    keep_dtype = _resolve_dtype(src, dtype)
    if not src.exists():
        raise CheckpointError(f"{src}: no such file or directory")
    if arch is not None:
        from probe.models.arch import parse_kwargs, split_arch

        where, name = split_arch(arch)
        if where.endswith(".py") or "/" in where:
            arch = f"{Path(where).expanduser().resolve()}:{name}"  # recorded absolute: reloadable from anywhere
        if family is not None and family != "external":
            raise ConfigError(f"load_model({src}): pass either family= or arch=, not both")
        family = "external"
        kwargs = {**kwargs, "arch": arch, "arch_kwargs": parse_kwargs(arch_kwargs)}
    run_path: Path | None = None
    if src.is_dir():
        weights = src / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{src}: not a run directory (no {WEIGHTS_NAME} in it)")
        run_path = src / RUN_JSON
    else:
        weights = src
        if src.name == WEIGHTS_NAME:
            run_path = src.with_name(RUN_JSON)
    run = _read_run_json(run_path) if run_path is not None and run_path.is_file() else None

    recorded: dict[str, Any] | None = None
    if run is not None:
        expected = run.get("weights_sha256")
        if expected:
            actual = sha256_file(weights)
            if actual != expected:
                raise CheckpointError(f"{weights}: sha256 mismatch: {run_path} records {expected[:16]}…, "
                                      f"the file has {actual[:16]}… (corrupt, truncated or replaced)")
    state, meta, container = read_state(weights, weights_key)
    recorded = _check_probe_meta(weights, state, meta)
    foreign = recorded is None
    run_spec = _run_spec(run, run_path) if run is not None else None
    if run_spec is not None:
        if recorded is not None and recorded["family"] != run_spec["family"]:
            raise CheckpointError(f"{weights}: family mismatch: {run_path} says "
                                  f"{run_spec['family']!r}, the file's metadata {recorded['family']!r}")
        recorded = run_spec
    file_dtype = float_dtype(state)
    if not keep_dtype:
        state = to_float32(state)

    fam, sz, kw = _resolve_spec(weights, recorded, family, size, kwargs)
    with torch.random.fork_rng(devices=[]):  # loading must not shift the caller's random stream
        model, state, prefix = _build_fitting(weights, fam, sz, kw, state, strict, allow_missing,
                                              strip=strip_prefixes if foreign else None)
    report = check_state(model.state_dict(), state, str(weights), strict, allow_missing, container, prefix)
    report.cloned = clone_overlapping(model)  # expand()ed parameters cannot be written into
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes and keys were checked above: what is left is torch's own refusal
        raise load_error(str(weights), model, exc) from exc
    if report.allowed_missing:
        warnings.warn(report.summary(), stacklevel=2)
    if keep_dtype:
        model = model.to(keep_dtype if isinstance(keep_dtype, torch.dtype) else file_dtype)
    model.__dict__["load_report"] = report
    model = model.to(dev).eval()
    if fam == "external":
        from probe.models.output_select import check_network

        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            model.__dict__["_probe_choice"] = check_network(model)
        report.output = model.__dict__["_probe_choice"].summary()
    return model


def _resolve_dtype(src: Path, dtype: str | None) -> torch.dtype | bool | None:
    """None/"float32" → convert to float32 (False); "keep" → the file's (True); a dtype name → that dtype."""
    if dtype in (None, "float32", "fp32"):
        return False
    if dtype == "keep":
        return True
    table = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
    if dtype not in table:
        raise ConfigError(f"load_model({src}): dtype must be float32, keep, float16, bfloat16 or float64, "
                          f"got {dtype!r}")
    return table[dtype]


# ------------------------------------------------------------------------------------------- helpers


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable run.json ({one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: run.json must hold a JSON object")
    return data


def _run_spec(run: dict[str, Any], path: Path | None) -> dict[str, Any] | None:
    spec = run.get("model")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("family"), str) \
            or not isinstance(spec.get("kwargs", {}), dict):
        raise CheckpointError(f"{path}: 'model' must be {{\"family\", \"size\", \"kwargs\"}}, got {spec!r}")
    return {"family": spec["family"], "size": spec.get("size"), "kwargs": dict(spec.get("kwargs") or {})}


def read_probe_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(state dict, recorded spec or None) of a safetensors file written by :func:`save_weights`, its format
    and tensor digest checked. Raises :class:`~probe.errors.CheckpointError` naming the file."""
    from probe.models.containers import read_state

    path = Path(path)
    state, meta, _ = read_state(path)
    return state, _check_probe_meta(path, state, meta)


def _check_probe_meta(path: Path, state: Mapping[str, Tensor], meta: Mapping[str, str]) -> dict[str, Any] | None:
    """Validate probe's own safetensors metadata; the recorded spec (None for a file without a family)."""
    fmt = meta.get("probe.format")
    if fmt is not None and fmt != FORMAT:
        raise CheckpointError(f"{path}: unsupported probe.format {fmt!r} (this probe reads {FORMAT!r})")
    digest = meta.get("probe.tensors_sha256")
    if digest and tensors_digest(state) != digest:
        raise CheckpointError(f"{path}: tensor data sha256 mismatch with the file's probe.tensors_sha256 "
                              "(corrupt or altered)")
    if "probe.family" not in meta:
        return None
    try:
        kwargs = json.loads(meta.get("probe.kwargs") or "{}")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: probe.kwargs metadata is not JSON ({exc})") from exc
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: probe.kwargs metadata must be a JSON object")
    return {"family": meta["probe.family"], "size": meta.get("probe.size") or None, "kwargs": kwargs}


def _resolve_spec(path: Path, recorded: dict[str, Any] | None, family: str | None, size: str | None,
                  kwargs: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    from probe.models import FAMILIES

    rec_family = recorded["family"] if recorded else None
    if family is not None and rec_family is not None and str(family).lower() != str(rec_family).lower():
        raise CheckpointError(f"{path}: family mismatch: the checkpoint holds {rec_family!r}, "
                              f"family={family!r} was asked for")
    fam = family if family is not None else rec_family
    if fam is None:
        raise CheckpointError(f"{path}: the network is not recorded in this file; pass --arch FILE.py:Class / "
                              f"arch= (your network class) or --family / family= (one of "
                              f"{', '.join(n for n in FAMILIES.names() if n != 'external')})")
    sz = size if size is not None else (recorded or {}).get("size")
    kw = {**((recorded or {}).get("kwargs") or {}), **kwargs}
    return str(fam), sz, kw


def _build_fitting(path: Path, family: str, size: str | None, kwargs: dict[str, Any],
                   state: dict[str, Tensor], strict: bool, allow_missing: Any,
                   strip: Any = None) -> tuple[nn.Module, dict[str, Tensor], str]:
    """Build the model (trying every size preset when ``size`` is None), fit key prefixes, check keys/shapes.

    Returns (model, the state with prefixes removed, the prefix removed)."""
    from probe.models import FAMILIES
    from probe.models.loadcheck import problems

    try:
        cls = FAMILIES.get(family)
        sizes = [size] if size is not None else list(getattr(cls, "sizes", None) or ["tiny"])
        best: tuple[int, str, str] | None = None
        for candidate in sizes:
            if family == "external":  # user code is built for real, once, as its own code builds it
                shell = cls(size=candidate, **kwargs)
            else:
                with torch.device("meta"):  # probe's own families: shapes only, no memory, no init cost
                    shell = cls(size=candidate, **kwargs)
            expected = shell.state_dict()
            fitted, prefix = strip(state, set(expected)) if strip is not None else (state, "")
            count, text = problems(expected, fitted, strict, allow_missing)
            if count == 0:
                return (shell if family == "external" else cls(size=candidate, **kwargs)), fitted, prefix
            if best is None or count < best[0]:
                best = (count, candidate, text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    assert best is not None
    hint = "" if size is not None or len(sizes) < 2 else " (no size preset fits; pass size= and/or options)"
    opts = {k: v for k, v in kwargs.items() if k != "arch_kwargs"} if family == "external" else kwargs
    what = f"{kwargs.get('arch')}" if family == "external" else f"{family}/{best[1]}{f' {opts}' if opts else ''}"
    raise CheckpointError(f"{path}: weights do not fit {what}: {best[2]}{hint}")
