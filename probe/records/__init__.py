"""Typed records at the ground floor: the one reader and writer of ``run.json`` and ``study.json``, the
evaluation set a run declares, and what the store keeps about a model — with the only copy of their defaults.

=================  ================================================================================
``RunRecord``      a training run's ``run.json`` (:mod:`probe.records.run`)
``StudyRecord``    a grid's ``study.json`` (:mod:`probe.records.study`); ``find_study(path)``
``EvalSpec``       the synthetic evaluation set of a config, with its defaults (:mod:`probe.records.evalspec`)
``ModelInfo``      kind (grid | external | anchor), task, provenance, output choice (:mod:`probe.records.model`)
``RecordError``    the one error: missing, corrupt, too-new or bad-field records (a one-line message)
=================  ================================================================================

Each record has a schema version (``schema``; files without one are read as version 0), ``load`` /
``from_dict`` and ``dump`` / ``to_dict``. This package imports nothing of probe but :mod:`probe.errors` and
:mod:`probe.fsutil`, so every layer may use it. Study-level results (model × model CKA, …) live in a store of
their own beside a study's ``results.h5``: :func:`study_store_path`.
"""

from __future__ import annotations

from pathlib import Path

from probe.records.base import RecordError
from probe.records.evalspec import DEFAULT_FOLDER_PATCH, DEFAULT_PATCH, EvalSpec
from probe.records.model import KINDS, ModelInfo, infer_kind, kinds_of
from probe.records.run import RUN_FILE, RUN_SCHEMA, RunRecord
from probe.records.study import STUDY_FILE, STUDY_SCHEMA, StudyRecord, find_study

#: file name of the store of study-level results beside ``results.h5``
STUDY_STORE = "study_results.h5"


def study_store_path(results: str | Path) -> Path:
    """Where the study-level results of the store ``results`` (``…/results.h5``) live: ``study_results.h5``
    in the same folder (entries keyed by the study's name instead of a model id)."""
    return Path(results).parent / STUDY_STORE


__all__ = ["DEFAULT_FOLDER_PATCH", "DEFAULT_PATCH", "KINDS", "RUN_FILE", "RUN_SCHEMA", "STUDY_FILE", "STUDY_SCHEMA",
           "STUDY_STORE", "EvalSpec", "ModelInfo", "RecordError", "RunRecord", "StudyRecord", "find_study",
           "infer_kind", "kinds_of", "study_store_path"]
