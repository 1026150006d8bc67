"""probe.records: round trips, one-line errors, the one copy of the defaults, and the one reader of run.json /
study.json (checked in the source of every other reader)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

import probe
from probe.errors import CheckpointError, DataError
from probe.records import (
    RUN_SCHEMA,
    EvalSpec,
    ModelInfo,
    RecordError,
    RunRecord,
    StudyRecord,
    find_study,
    kinds_of,
)

ROOT = Path(probe.__file__).parent


def test_run_record_round_trip_keeps_unknown_keys_and_writes_the_resolved_eval(tmp_path, tiny_config):
    raw = {"status": "done", "config": tiny_config, "axes": {"n_backgrounds": 4}, "seed": 3,
           "weights_sha256": "ab" * 32, "metrics": {"psnr_id": 20.0}, "owner": {"pid": 1}, "wall_time_s": 1.5}
    record = RunRecord.from_dict(raw)
    assert record.schema == 0 and record.done and record.seed == 3 and record.family == "resnet"
    assert record.model == tiny_config["model"]  # the config's model when the record has none
    file = record.dump(tmp_path)
    again = RunRecord.load(tmp_path)
    stored = json.loads(file.read_text())
    assert stored["schema"] == RUN_SCHEMA and stored["owner"] == {"pid": 1} and stored["wall_time_s"] == 1.5
    assert stored["eval"] == EvalSpec.from_config(tiny_config).to_dict()  # resolved once, written with the record
    assert again.eval_spec == EvalSpec.from_config(tiny_config) and again.path == tmp_path
    assert again.to_dict() == stored


def test_study_record_round_trip_and_find(tmp_path):
    spec = {"study": {"probes": ["generalization", "cka"], "probe_params": {"cka": {"n_images": 4}}}}
    StudyRecord(name="s", spec=spec, cells=[{"id": "a", "axes": {}}], task="noise").dump(tmp_path)
    (tmp_path / "a").mkdir()
    found = find_study(tmp_path / "a")
    assert found.name == "s" and found.probes == ["generalization", "cka"] and found.task == "noise"
    assert found.probe_params == {"cka": {"n_images": 4}} and found.schema == 1
    assert find_study(tmp_path.parent / "nowhere") is None
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "study.json").write_text(json.dumps({"name": "old", "spec": spec}))  # before schema versions
    assert StudyRecord.load(legacy).schema == 0 and StudyRecord.load(legacy).probes == ["generalization", "cka"]


@pytest.mark.parametrize("content, match", [
    (None, "no run.json"),
    ("{not json", "corrupt run.json"),
    ("[1, 2]", "must hold a JSON object"),
    (json.dumps({"schema": 99}), "newer than this probe reads.*upgrade probe"),
    (json.dumps({"schema": "one"}), "'schema' must be a non-negative int"),
    (json.dumps({"config": [1]}), "key 'config' must be a table"),
    (json.dumps({"seed": "x"}), "key 'seed' must be an int"),
    (json.dumps({"history": {}}), "key 'history' must be a list"),
])
def test_run_record_errors_are_one_line_naming_the_file(tmp_path, content, match):
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    with pytest.raises(RecordError, match=match) as info:
        RunRecord.load(tmp_path)
    assert str(tmp_path / "run.json") in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, DataError)


def test_undecodable_and_too_new_study_records_are_refused(tmp_path):
    (tmp_path / "study.json").write_bytes(b"\xff\xfe")
    with pytest.raises(RecordError, match="unreadable study.json"):
        StudyRecord.load(tmp_path)
    (tmp_path / "study.json").write_text(json.dumps({"schema": 5}))
    with pytest.raises(RecordError, match="study.json schema 5 is newer"):
        StudyRecord.load(tmp_path)


def test_the_evaluation_defaults_live_in_one_place(tiny_config):
    from probe.data.paired import evaluation_info
    from probe.probes.evaldata import eval_info

    bare = {"data": {"background": "smooth"}}
    spec = EvalSpec.from_config(bare)
    assert (spec.patch, spec.n_images, spec.seed) == (48, 16, 12345)
    assert spec.splits == {"id": {"type": "rain", "preset": "small"}}
    assert evaluation_info(bare) == spec.to_dict() == eval_info(bare)
    assert eval_info(tiny_config, n_images=2)["n_images"] == 2
    assert RunRecord.from_dict({"config": {"data": {}}}).patch == 48  # the training patch default, the same one


def test_model_info_kinds_and_their_inference_for_old_stores():
    info = ModelInfo(kind="external", task="rain", output_choice={"index": "1.-1", "why": "final stage"},
                     fields={"family": "Net"}).to_info()
    assert info["kind"] == "external" and info["external"] is True and info["output_choice"]["why"] == "final stage"
    back = ModelInfo.from_info(info)
    assert back.kind == "external" and back.output_choice == {"index": "1.-1", "why": "final stage"}
    with pytest.raises(RecordError, match="kind must be one of"):
        ModelInfo(kind="study")
    old = pd.DataFrame({"model_id": ["g", "a", "e"], "n_backgrounds": [4, None, None],
                        "role": ["", "oracle", None]})
    assert list(kinds_of(old)) == ["grid", "anchor", "external"]
    assert list(kinds_of(old.assign(kind=["grid", "anchor", "grid"]))) == ["grid", "anchor", "grid"]  # stored wins


def test_run_dir_reads_and_writes_through_the_record(tmp_path, tiny_config):
    from probe.train.rundir import RunDir

    run = RunDir(tmp_path)
    run.write({"status": "running", "config": tiny_config})
    assert json.loads((tmp_path / "run.json").read_text())["schema"] == RUN_SCHEMA
    assert run.read()["status"] == "running" and isinstance(run.record(), RunRecord)


READERS = ["train", "grid", "measure", "report", "demo.py", "shortcut.py", "anchors.py", "cross_models.py",
           "probes/evaldata.py"]
TOKENS = ("run.json", "study.json", "RECORD", "STUDY_FILE", "record_path", "study_file")


def _json_reads(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("loads", "load") \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "json":
            text = ast.get_source_segment(source, node) or ""
            if any(token in text for token in TOKENS):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def test_records_is_the_one_reader_of_run_and_study_records():
    files = [p for name in READERS for p in ([ROOT / name] if name.endswith(".py") else (ROOT / name).rglob("*.py"))]
    readers = [hit for path in files for hit in _json_reads(path)]
    assert not readers, f"run.json / study.json read outside probe.records: {readers}"


def test_measure_has_no_pseudo_model_and_no_probe_matched_by_name():
    from probe.probes import PROBES

    names = set(PROBES.names())
    hits = []
    for path in (ROOT / "measure").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "_study":
                hits.append(f"{path.name}:{node.lineno} '_study'")
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in names:
                        hits.append(f"{path.name}:{node.lineno} compares with probe name {side.value!r}")
    assert not hits, hits
