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
import pickle
import re
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
               device: str | torch.device = "cpu", strict: bool = True, **kwargs: Any) -> nn.Module:
    """Load a model in ``eval()`` mode from a run directory, a ``.safetensors`` file or a foreign ``.pth``.

    - run directory: ``model.safetensors`` + ``run.json``; the file's sha256 must equal
      ``run.json["weights_sha256"]`` and the model spec comes from ``run.json["model"]``.
    - ``.safetensors``: the spec comes from the file's ``probe.*`` metadata; a sibling ``run.json`` is
      checked when the file is the run's ``model.safetensors``.
    - anything else (``.pth``/``.pt``): ``torch.load(weights_only=True)``; BasicSR ``params_ema``
      (preferred) or ``params``, ``{"state_dict": ...}`` or a plain state dict; a ``module.`` prefix is
      stripped. ``family`` is required; without ``size`` the first preset whose shapes fit is used.

    ``family`` must agree with a recorded family; ``size`` and ``kwargs`` override recorded ones. With
    ``strict=False`` missing/unexpected keys are tolerated (shape mismatches never are)::

        model = load_model("trained_models/study/cell-3")      # sha256 verified, in eval mode
        model = load_model("net_g.pth", family="swinir", size="paper", device="cuda")
    """
    src = Path(path)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"load_model({src}): invalid device {device!r}") from exc
    if not src.exists():
        raise CheckpointError(f"{src}: no such file or directory")
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
    if weights.suffix == ".safetensors" or _looks_like_safetensors(weights):
        state, meta_spec = _read_safetensors(weights)
        recorded = meta_spec
        run_spec = _run_spec(run, run_path) if run is not None else None
        if run_spec is not None:
            if meta_spec is not None and meta_spec["family"] != run_spec["family"]:
                raise CheckpointError(f"{weights}: family mismatch: {run_path} says "
                                      f"{run_spec['family']!r}, the file's metadata {meta_spec['family']!r}")
            recorded = run_spec
    else:
        state = _read_torch(weights)

    fam, sz, kw = _resolve_spec(weights, recorded, family, size, kwargs)
    with torch.random.fork_rng(devices=[]):  # loading must not shift the caller's random stream
        model = _build_fitting(weights, fam, sz, kw, state, strict)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:  # pragma: no cover - shapes and keys were checked above
        raise CheckpointError(f"{weights}: {one_line(exc)}") from exc
    return model.to(dev).eval()


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


def _looks_like_safetensors(path: Path) -> bool:
    """8-byte little-endian header length, then a JSON object that fits in the file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # SafetensorError, OSError, ...: the header or data region is unusable
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({one_line(exc)})") from exc
    fmt = meta.get("probe.format")
    if fmt is not None and fmt != FORMAT:
        raise CheckpointError(f"{path}: unsupported probe.format {fmt!r} (this probe reads {FORMAT!r})")
    digest = meta.get("probe.tensors_sha256")
    if digest and tensors_digest(state) != digest:
        raise CheckpointError(f"{path}: tensor data sha256 mismatch with the file's probe.tensors_sha256 "
                              "(corrupt or altered)")
    if "probe.family" not in meta:
        return state, None
    try:
        kwargs = json.loads(meta.get("probe.kwargs") or "{}")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: probe.kwargs metadata is not JSON ({exc})") from exc
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: probe.kwargs metadata must be a JSON object")
    return state, {"family": meta["probe.family"], "size": meta.get("probe.size") or None, "kwargs": kwargs}


def _read_torch(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found or "global" in text.lower():
            what = found.group(1) if found else "a non-tensor object"
            raise CheckpointError(f"{path}: refused: the pickle holds {what}, which weights-only loading does "
                                  "not allow (probe never unpickles arbitrary objects)") from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint "
                              f"({one_line(text.splitlines()[-1] if text else exc)})") from exc
    except Exception as exc:  # RuntimeError (bad zip), EOFError, OSError, ...
        first = str(exc).split(". ")[0]
        raise CheckpointError(f"{path}: truncated or corrupt torch checkpoint "
                              f"({type(exc).__name__}: {one_line(first)})") from exc
    state: Any = obj
    if isinstance(obj, dict):
        for key in _FOREIGN_KEYS:
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not state or \
            not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: no state dict found (expected params_ema, params, state_dict or a "
                              f"name → tensor mapping; top level: {keys})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _resolve_spec(path: Path, recorded: dict[str, Any] | None, family: str | None, size: str | None,
                  kwargs: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    from probe.models import FAMILIES

    rec_family = recorded["family"] if recorded else None
    if family is not None and rec_family is not None and str(family).lower() != str(rec_family).lower():
        raise CheckpointError(f"{path}: family mismatch: the checkpoint holds {rec_family!r}, "
                              f"family={family!r} was asked for")
    fam = family if family is not None else rec_family
    if fam is None:
        raise CheckpointError(f"{path}: the family is not recorded in this file; pass family= "
                              f"(one of {', '.join(FAMILIES.names())})")
    sz = size if size is not None else (recorded or {}).get("size")
    kw = {**((recorded or {}).get("kwargs") or {}), **kwargs}
    return str(fam), sz, kw


def _build_fitting(path: Path, family: str, size: str | None, kwargs: dict[str, Any],
                   state: Mapping[str, Tensor], strict: bool) -> nn.Module:
    """Build the model (trying every size preset when ``size`` is None) and check keys and shapes."""
    from probe.models import FAMILIES

    try:
        cls = FAMILIES.get(family)
        sizes = [size] if size is not None else list(getattr(cls, "sizes", None) or ["tiny"])
        best: tuple[int, str, str] | None = None
        for candidate in sizes:
            with torch.device("meta"):  # shapes only, no memory, no init cost
                shell = cls(size=candidate, **kwargs)
            problems, text = _mismatch(shell.state_dict(), state, strict)
            if problems == 0:
                return cls(size=candidate, **kwargs)
            if best is None or problems < best[0]:
                best = (problems, candidate, text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    assert best is not None
    hint = "" if size is not None else " (no size preset fits; pass size= and/or options)"
    opts = f" {kwargs}" if kwargs else ""
    raise CheckpointError(f"{path}: weights do not fit {family}/{best[1]}{opts}: {best[2]}{hint}")


def _mismatch(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], strict: bool) -> tuple[int, str]:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = []
    if strict and missing:
        parts.append(_listing(len(missing), "missing key", missing))
    if strict and unexpected:
        parts.append(_listing(len(unexpected), "unexpected key", unexpected))
    if shapes:
        parts.append(_listing(len(shapes), "shape mismatch", shapes, plural="es"))
    count = len(shapes) + (len(missing) + len(unexpected) if strict else 0)
    return count, "; ".join(parts)


def _listing(n: int, what: str, items: list[str], plural: str = "s") -> str:
    shown = ", ".join(items[:_SHOW]) + (f", … {n - _SHOW} more" if n > _SHOW else "")
    return f"{n} {what}{plural if n != 1 else ''} ({shown})"
