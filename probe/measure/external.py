"""One external network (a checkpoint with ``--arch`` / ``--family``, or a model card) as an entry of a plan.

Its model id is the card's ``name`` (or ``name=``, else the checkpoint's file stem) made store-safe; its
info (:class:`probe.records.ModelInfo`, kind ``external``) holds ``family`` (the class name, or probe's
family), ``model_name``, ``arch``, ``path``, ``weights_container``, the load summary and ``output_choice``
(which output of a multi-output network is measured and why, when the loader reports it). It has no grid
axes (no ``n_backgrounds``): the report places it beside the grid's models, per background source.

Like for like: without ``eval_folders`` it is measured on every evaluation set of the study whose
``study.json`` sits beside the store (one per background source, :func:`probe.measure.plan.study_eval_sets`),
else of the bundled default study; with ``eval_folders`` on those folders of real pairs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from probe.errors import ConfigError

_CONVENTIONS = ("output", "output_is", "input_range", "pad_multiple", "pad_mode", "tile", "tile_overlap", "layers",
                "arch_args", "code_root")


def _safe_id(name: str) -> str:
    text = re.sub(r"[^\w.+-]+", "_", name).strip("._") or "model"
    return text[:80]


def default_eval_data(out: Path) -> Any:
    """The first evaluation set of the study beside ``out`` (else of the bundled default study)."""
    from probe.measure.plan import study_configs, study_eval_sets

    return study_eval_sets(study_configs(Path(out))[1], None)[0]


def _card(path: Path, kind: str, arch: str | None, arch_kwargs: Any, family: str | None, size: str | None,
          strict: bool | None, allow_missing: list[str] | None, dtype: str | None, conventions: dict[str, Any],
          weights_key: str | None = None) -> Any:
    from probe.models.card import ModelCard, read_card

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
        return card
    if arch is None and family is None and conventions:
        raise ConfigError(f"{path}: {', '.join(conventions)} need --arch (your network class)")
    from probe.models.arch import parse_kwargs

    return ModelCard(path=path, name=path.stem, weights=path, arch=arch, family=family, size=size,
                     kwargs=parse_kwargs(arch_kwargs) if arch is not None else {}, conventions={},
                     dtype=dtype, strict=True if strict is None else strict, allow_missing=list(allow_missing or []),
                     weights_key=weights_key)


def external_entry(path: Path, kind: str, out: Path, splits: list[str] | None, device: str,
                   arch: str | None = None, arch_kwargs: Any = None, family: str | None = None,
                   size: str | None = None, name: str | None = None, strict: bool | None = None,
                   allow_missing: list[str] | None = None, dtype: str | None = None,
                   eval_folders: dict[str, str] | None = None, eval_patch: int | None = None,
                   skip_broken: bool = False, eval_layout: dict[str, str] | str | None = None,
                   weights_key: str | None = None, extra_info: dict[str, str] | None = None,
                   metric_conventions: dict[str, Any] | None = None,
                   **conventions: Any) -> tuple[Any, list[dict[str, Any]], Any]:
    """(the entry, the study's run configs, the study record or None) for one checkpoint or card. A single
    network that does not load raises (one line, exit 2)."""
    from probe.measure.plan import study_configs, study_eval_sets
    from probe.probes.study import StudyEntry
    from probe.provenance import sha256_file
    from probe.records import DEFAULT_FOLDER_PATCH, ModelInfo

    unknown = sorted(set(conventions) - set(_CONVENTIONS))
    if unknown:
        raise ConfigError(f"measure: unknown option(s) {', '.join(unknown)}")
    conventions = {k: v for k, v in conventions.items() if v is not None}
    card = _card(path, kind, arch, arch_kwargs, family, size, strict, allow_missing, dtype, conventions,
                 weights_key)
    if getattr(card, "eval_layout", None):  # the card's layout names, checked before anything is loaded
        from probe.data.layouts import parse_layout

        try:
            for value in card.eval_layout.values() if isinstance(card.eval_layout, dict) else [card.eval_layout]:
                parse_layout(value)
        except ConfigError as exc:
            raise ConfigError(f"{card.path}: 'eval_layout': {exc}") from exc
    display = name or card.name
    model = card.load(device=device, **conventions)
    study, configs = study_configs(out)
    if eval_layout and not eval_folders:
        raise ConfigError(f"{path}: an eval layout applies to --eval-folder splits; none given")
    if eval_folders:
        from probe.probes.evalfolders import eval_data_from_folders

        patch = DEFAULT_FOLDER_PATCH if eval_patch is None else (eval_patch or None)
        evals = [eval_data_from_folders(eval_folders, patch=patch, on_error="skip" if skip_broken else "raise",
                                        layouts=eval_layout or getattr(card, "eval_layout", None),
                                        metric_conventions=metric_conventions,
                                        conventions_from=(extra_info or {}).get("basicsr_options")).select(splits)]
    else:
        evals = study_eval_sets(configs, splits)
    report = getattr(model, "load_report", None)
    fields = {"model_name": display, "family": type(model).__name__ if card.arch
              else (getattr(model, "spec", None) or {}).get("family", card.family),
              "arch": card.arch or "", "path": str(card.weights),
              "weights_container": getattr(report, "container", ""),
              "load": report.summary() if report is not None else ""}
    if card.arch:
        fields["conventions"] = json.dumps({**card.conventions, **conventions}, sort_keys=True)
        from probe.models.output_select import choice_info

        fields.update(choice_info(model))  # which output is measured and why (the loader's record)
    fields.update(extra_info or {})
    choice = getattr(report, "output_choice", None) or getattr(model, "output_choice", None)
    from probe.tasks import task_of_degradation

    task = (study.task if study is not None else None) or task_of_degradation(
        (configs[0] if configs else {}).get("degradation"))
    info = ModelInfo(kind="external", task=task, output_choice=dict(choice) if isinstance(choice, dict) else {},
                     fields=fields).to_info()
    entry = StudyEntry(model_id=_safe_id(display), kind="external", info=info, load=lambda: model,
                       sha256=sha256_file(card.weights), evals=evals, path=Path(card.weights))
    return entry, configs, study
