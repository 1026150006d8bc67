"""Measure one external network (a checkpoint with ``--arch`` / ``--family``, or a model card) beside a grid.

Its model id is the card's ``name`` (or ``name=``, else the checkpoint's file stem) made store-safe; its
``info`` holds ``external: true``, ``family`` (the class name, or probe's family), ``model_name``, ``arch``,
``path``, ``weights_container`` and the load summary. It has no grid axes (no ``n_backgrounds``): the report
places it beside the grid's models (reference lines, table rows) instead of on the curves' x axis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from probe.errors import ConfigError

_CONVENTIONS = ("output", "output_is", "input_range", "pad_multiple", "pad_mode", "tile", "tile_overlap", "layers",
                "arch_args")


def _safe_id(name: str) -> str:
    text = re.sub(r"[^\w.+-]+", "_", name).strip("._") or "model"
    return text[:80]


def study_probes(out: Path) -> tuple[list[str] | None, dict[str, Any]]:
    """The probes (and their parameters) of the study whose ``study.json`` sits beside ``out``."""
    study_file = out.parent / "study.json"
    if not study_file.is_file():
        return None, {}
    study = ((json.loads(study_file.read_text(encoding="utf-8")) or {}).get("spec") or {}).get("study") or {}
    return study.get("probes"), dict(study.get("probe_params") or {})


def default_eval_data(out: Path) -> Any:
    """The synthetic ID/OOD splits of the study whose ``study.json`` sits beside ``out``, else of the bundled
    default study (the grid's first cell's evaluation set: the same images the grid's models were measured on)."""
    from probe.grid.spec import StudySpec
    from probe.probes.evaldata import eval_data_for_run

    study_file = out.parent / "study.json"
    spec = None
    if study_file.is_file():
        raw = (json.loads(study_file.read_text(encoding="utf-8")) or {}).get("spec")
        if raw:
            spec = StudySpec.from_dict(raw, source=str(study_file))
    if spec is None:
        from probe.demo import bundled_spec

        spec = StudySpec.from_toml(bundled_spec())
    config = spec.config_for(spec.cells()[0]).to_dict()
    return eval_data_for_run({"config": config})


def measure_external(path: Path, kind: str, store: Any, summary: dict[str, Any], probes: list[str] | None,
                     splits: list[str] | None, force: bool, device: str | None, show_progress: bool | None,
                     arch: str | None = None, arch_kwargs: Any = None, family: str | None = None,
                     size: str | None = None, name: str | None = None, strict: bool | None = None,
                     allow_missing: list[str] | None = None, dtype: str | None = None,
                     eval_folders: dict[str, str] | None = None, eval_patch: int | None = 128,
                     skip_broken: bool = False, eval_layout: dict[str, str] | str | None = None,
                     weights_key: str | None = None, extra_info: dict[str, str] | None = None,
                     **conventions: Any) -> None:
    """Measure one checkpoint or card into ``store`` (inside :func:`probe.measure.measure`'s transaction)."""
    from probe.measure.core import DEFAULT_PROBES, make_probes, run_probes
    from probe.models.card import ModelCard, read_card
    from probe.progress import progress
    from probe.train.trainer import resolve_device

    unknown = sorted(set(conventions) - set(_CONVENTIONS))
    if unknown:
        raise ConfigError(f"measure: unknown option(s) {', '.join(unknown)}")
    conventions = {k: v for k, v in conventions.items() if v is not None}
    if kind == "card":
        card = read_card(path)
        if arch is not None or family is not None:
            raise ConfigError(f"{path}: the model card names the network; drop --arch/--family")
        if strict is not None:
            card.strict = strict
        if allow_missing:
            card.allow_missing = list(allow_missing)
        if dtype is not None:
            card.dtype = dtype
    else:
        if arch is None and family is None and conventions:
            raise ConfigError(f"{path}: {', '.join(conventions)} need --arch (your network class)")
        from probe.models.arch import parse_kwargs

        card = ModelCard(path=path, name=path.stem, weights=path, arch=arch, family=family, size=size,
                         kwargs=parse_kwargs(arch_kwargs) if arch is not None else {}, conventions={},
                         dtype=dtype, strict=True if strict is None else strict,
                         allow_missing=list(allow_missing or []), weights_key=weights_key)
    display = name or card.name
    model_id = _safe_id(display)
    dev = resolve_device(device or "cpu")
    if card.eval_layout:  # the card's layout names, checked before anything is loaded
        from probe.data.layouts import parse_layout

        try:
            for value in card.eval_layout.values() if isinstance(card.eval_layout, dict) else [card.eval_layout]:
                parse_layout(value)
        except ConfigError as exc:
            raise ConfigError(f"{card.path}: 'eval_layout': {exc}") from exc
    model = card.load(device=str(dev), **conventions)  # a single model that does not load: one line, exit 2
    if eval_layout and not eval_folders:
        raise ConfigError(f"{path}: an eval layout applies to --eval-folder splits; none given")
    if eval_folders:
        from probe.probes.evalfolders import eval_data_from_folders, summary_lines

        layouts = eval_layout or card.eval_layout
        data = eval_data_from_folders(eval_folders, patch=eval_patch, on_error="skip" if skip_broken else "raise",
                                      layouts=layouts).select(splits)
        summary["eval_data"] = summary_lines(data)
    else:
        data = default_eval_data(Path(summary["store"])).select(splits)
    from probe.device import to_device

    data = to_device(data, dev)  # moved to the model's device once
    report = getattr(model, "load_report", None)
    from probe.provenance import sha256_file

    info = {"external": True, "model_name": display, "family": type(model).__name__ if card.arch
            else (getattr(model, "spec", None) or {}).get("family", card.family),
            "arch": card.arch or "", "path": str(card.weights),
            "weights_container": getattr(report, "container", ""),
            "load": report.summary() if report is not None else ""}
    if card.arch:
        info["conventions"] = json.dumps({**card.conventions, **conventions}, sort_keys=True)
        from probe.models.output_select import choice_info

        info.update(choice_info(model))
    info.update(extra_info or {})
    study_names, study_params = study_probes(Path(summary["store"]))  # beside a grid: the grid's probes
    probe_objs = make_probes(probes or study_names or DEFAULT_PROBES, study_params)
    summary["runs"] += 1
    summary["load"] = info["load"]
    summary["model_id"] = model_id
    bar = progress(total=len(probe_objs), desc=f"measure {display}", unit="probe", enabled=show_progress,
                   leave=True)
    try:
        run_probes(store, model_id, info, lambda: model, data, probe_objs, summary, bar, force,
                   sha256=sha256_file(card.weights))
    finally:
        bar.close()
