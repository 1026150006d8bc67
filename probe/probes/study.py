"""The contract of a study-level probe: a probe that reads every measured entry of a study, not one model.

A :class:`StudyProbe` is a registry entry of ``PROBES`` like any probe (one file, one registration line). It
declares what it needs; ``probe measure`` plans it beside the per-model probes and runs it once, after them,
under the same failure policy (a failure is recorded and listed, the rest goes on):

* ``inputs``: per-model probes whose stored results it reads (documentation and a plan check: the plan says
  when none of them is measured);
* ``implied_by``: per-model probes that bring it along when asked for on a grid (``cka`` → ``cka_models``);
* ``kinds``: entry kinds it reads (``grid``, ``external``, ``anchor``; :class:`probe.records.ModelInfo`);
* :meth:`extra` (optional): more per-entry runs it needs, planned with the per-model probes (the shortcut
  score's attribution on the study's common probe set);
* :meth:`run` ``(entries, store, context) -> dict``: reads the store (inside measure's transaction: this call's
  results too), writes its results — per-model rows into the store, whole-study results into the study store
  (:func:`probe.records.study_store_path`) — and returns a JSON-able summary.

A study probe called on one model (``Probe.run(model, data)`` style) is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from probe.probes.base import Probe


@dataclass
class StudyEntry:
    """One measured entry of a plan, as a study probe sees it.

    ``model_id`` (the store's id), ``kind`` (grid | external | anchor), ``info`` (the model info written),
    ``sha256`` (weights; "" for anchors), ``load`` (a callable returning the model in eval mode, on the plan's
    device), ``record`` (the :class:`probe.records.RunRecord` of a grid model, else None), ``evals``
    (``[EvalData]`` it is measured on) and ``path`` (run directory or checkpoint)."""

    model_id: str
    kind: str
    info: dict[str, Any]
    load: Callable[[], Any]
    sha256: str = ""
    record: Any = None
    evals: list[Any] = field(default_factory=list)
    path: Path | None = None
    #: results of this entry's study-probe extra runs computed in this call (probe name -> ProbeResult)
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyContext:
    """What a study probe may use besides the entries: the study's ``name``, the ``study_store`` (a
    :class:`probe.store.ResultStore` for whole-study results), ``probe_params`` of the study, the selected
    ``splits``, ``device``, ``force`` and ``provenance`` to write with results."""

    name: str
    study_store: Any
    probe_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: list[str] | None = None
    device: str = "cpu"
    force: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    computed: int = 0  # per-model results computed by this measure call (a study probe may skip when 0)


class StudyProbe(Probe):
    """Base class of study-level probes (see the module docstring)."""

    study_level: ClassVar[bool] = True
    inputs: ClassVar[tuple[str, ...]] = ()
    implied_by: ClassVar[tuple[str, ...]] = ()
    kinds: ClassVar[tuple[str, ...]] = ("grid",)
    #: tasks (degradation decompositions: rain, noise, blur) on which the probe gives an external network a
    #: validated reading among a grid's models; ``--beside`` adds it by default there (empty: never)
    reading_tasks: ClassVar[tuple[str, ...]] = ()

    def extra(self, entry: StudyEntry, entries: list[StudyEntry], probe_params: dict[str, Any]
              ) -> list[tuple[Probe, Any]]:
        """Extra per-entry runs ``[(probe, EvalData)]`` this study probe needs for ``entry`` (default none)."""
        return []

    @staticmethod
    def per_model_call(entries: Any, store: Any) -> bool:
        """Whether ``run`` was called the per-model way (``run(model, data)``), which a study probe refuses."""
        return not isinstance(entries, (list, tuple)) or store is None or not hasattr(store, "entries")

    def run(self, entries: Any, store: Any = None, context: StudyContext | None = None) -> Any:  # type: ignore[override]
        from probe.errors import DataError

        raise DataError(f"the {self.name!r} probe is study-level: run `probe measure` on a grid (it reads every "
                        "model of the study)")
