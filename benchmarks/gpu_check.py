"""One prepared GPU check (≤ 5 minutes on one GPU): train → grid (local and batched) → measure with every
probe (and the cross-model CKA) → report on CUDA, CUDA-vs-CPU agreement, the per-family step time and peak
memory at paper size, the full probe battery on a paper-size model (256 images, 128 px), rain synthesis.

    python benchmarks/gpu_check.py [--device cuda] [--out DIR]

Prints one JSON line per stage (``{"stage": ..., "ok": ..., "seconds": ...}``), a failing stage never
stops the next, and a last ``summary`` line. Without CUDA it prints one line saying so and exits 0;
``--device cpu`` runs every stage at tiny sizes (to check the script itself).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gpu_steps import FAMILY_NAMES, bare_step, is_convolutional, mib, trainer_step  # noqa: E402

RESULTS: list[dict] = []

SPEC = """
[study]
name = "gpucheck"
probes = ["generalization", "decomposition", "activations", "cka", "ddr", "attribution", "shortcut"]
[study.probe_params.activations]
n_images = 8
[study.probe_params.ddr]
n_backgrounds = 4
[study.probe_params.attribution]
n_images = 2
steps = 16
[base]
seed = 0
[base.model]
family = "resnet"
size = "{size}"
[base.data]
patch = {patch}
background = "smooth"
[base.train]
iterations = {iterations}
batch = 8
checkpoint_every = 0
[base.eval]
n_images = 8
[base.eval.splits.id]
type = "rain"
preset = "small"
[base.eval.splits.ood]
type = "rain"
preset = "large"
[axes]
n_backgrounds = [1, 4]
lr = [2e-4, 1e-3]
"""


def stage(name: str):
    def wrap(fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            line = {"stage": name}
            try:
                info = fn(*args, **kwargs) or {}
                line.update(ok=bool(info.pop("ok", True)), **info)
            except Exception as exc:  # a failing stage never stops the next
                line.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                            where=traceback.format_exc().strip().splitlines()[-3:])
            line["seconds"] = round(time.perf_counter() - t0, 2)
            RESULTS.append(line)
            print(json.dumps(line, default=str), flush=True)
            return line
        return run
    return wrap


@stage("cuda")
def check_cuda(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"device": str(device), "note": "not a GPU: script check only"}
    return {"device": torch.cuda.get_device_name(device), "capability": torch.cuda.get_device_capability(device),
            "bf16": torch.cuda.is_bf16_supported(), "torch": torch.__version__, "cuda": torch.version.cuda}


@stage("train")
def check_train(device: torch.device, root: Path, size: str, patch: int) -> dict:
    from probe.train import train

    config = {"name": "check", "seed": 0, "model": {"family": "resnet", "size": size},
              "data": {"background": "smooth", "n_backgrounds": 4, "patch": patch},
              "train": {"iterations": 60, "batch": 8, "log_every": 20, "checkpoint_every": 30},
              "eval": {"n_images": 8}}
    out = {}
    for precision in ("auto", "fp32", "fp16" if device.type == "cuda" else "bf16"):
        c = copy.deepcopy(config)
        c["train"]["precision"] = precision
        record = train(c, root / f"train_{precision}", device=str(device), show_progress=False)
        metrics = record["metrics"]
        out[precision] = {"status": record["status"], "step": record["step"],
                          "psnr_id": round(metrics["psnr_id"], 2), "loss": round(metrics["loss"], 4)}
    return {"ok": all(v["status"] == "done" for v in out.values()), "runs": out}


@stage("grid")
def check_grid(device: torch.device, root: Path, size: str, patch: int) -> dict:
    from safetensors.torch import load_file

    from probe.grid.runner import run_grid

    (root / "study.toml").write_text(SPEC.format(size=size, patch=patch, iterations=40))
    t0 = time.perf_counter()
    local = run_grid(root / "study.toml", root / "grid", workers=2, device=str(device), show_progress=False)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = run_grid(root / "study.toml", root / "grid_batched", executor="batched", device=str(device),
                       show_progress=False)
    t_batched = time.perf_counter() - t0
    diff = 0.0
    for cell in local["outcomes"]:
        a = load_file(str(root / "grid" / cell / "model.safetensors"))
        b = load_file(str(root / "grid_batched" / cell / "model.safetensors"))
        diff = max(diff, max(float((a[k] - b[k]).abs().max()) for k in a))
    return {"ok": local["done"] == batched["done"] == 4 and diff < 1e-2, "local_s": round(t_local, 1),
            "batched_s": round(t_batched, 1), "max_weight_diff_batched_vs_alone": diff,
            "note": "batched vs alone on CUDA: bf16 autocast and kernel choice make the difference nonzero"}


@stage("measure")
def check_measure(device: torch.device, root: Path) -> dict:
    from probe.measure import measure
    from probe.models.checkpoint import load_model
    from probe.probes import PROBES
    from probe.probes.evaldata import eval_data_for_run
    from probe.store import read_metrics

    summary = measure(root / "grid", out=root / "report" / "results.h5", device=str(device), show_progress=False)
    frame = read_metrics(root / "report" / "results.h5")
    run = sorted(p for p in (root / "grid").iterdir() if (p / "run.json").is_file())[0]
    data = eval_data_for_run(run)
    spec = json.loads((root / "grid" / "study.json").read_text())["spec"]["study"]
    worst = {}
    per_model = [n for n in spec["probes"] if not getattr(PROBES.get(n), "study_level", False)]
    for name in per_model:
        params = spec.get("probe_params", {}).get(name, {})
        cpu = PROBES.get(name)(**params).run(load_model(run), data).metrics
        gpu = PROBES.get(name)(**params).run(load_model(run, device=str(device)), data).metrics
        rel = [abs(a["value"] - b["value"]) / max(1e-6, abs(a["value"])) for a, b in zip(cpu, gpu)
               if a["value"] == a["value"] and b["value"] == b["value"]]
        worst[name] = round(max(rel, default=0.0), 6)
    return {"ok": summary["computed"] == 4 * len(per_model) and "cross_model_cka" in summary
            and "shortcut" in summary,
            "computed": summary["computed"], "probes": sorted(set(frame["probe"])),
            "max_rel_diff_cuda_vs_cpu": worst}


@stage("report")
def check_report(root: Path) -> dict:
    from probe.report.build import build_report

    html = build_report(root / "report")
    return {"ok": html.is_file(), "bytes": html.stat().st_size}


@stage("families")
def check_families(device: torch.device, size: str, patch: int, batch: int) -> dict:
    out = {}
    on_gpu = device.type == "cuda"
    for family in FAMILY_NAMES:
        conv = is_convolutional(family) and on_gpu
        row = {}
        for precision in ("fp32", "bf16"):
            ms, mem = bare_step(family, size, patch, batch, precision, conv, 8 if on_gpu else 2, device)
            row[f"bare_{precision}_ms"], row[f"bare_{precision}_peak_mib"] = round(ms, 2), mib(mem)
        ms, mem = trainer_step(family, size, patch, batch, "bf16", 10 if on_gpu else 2, 30 if on_gpu else 4,
                               device)
        row["trainer_bf16_ms"], row["trainer_bf16_peak_mib"] = round(ms, 2), mib(mem)
        row["trainer_over_bare_bf16"] = round(ms / row["bare_bf16_ms"], 3)
        out[family] = row
    return {"size": size, "patch": patch, "batch": batch, "families": out,
            "note": "single repetition, few steps: indicative; benchmarks/gpu_train.py for the medians"}


@stage("battery")
def check_battery(device: torch.device, root: Path, size: str, patch: int, n_images: int) -> dict:
    from probe.measure import measure
    from probe.probes import PROBES
    from probe.train import train

    config = {"name": "battery", "seed": 0, "model": {"family": "resnet", "size": size},
              "data": {"background": "smooth", "n_backgrounds": 4, "patch": patch},
              "train": {"iterations": 2, "batch": 4, "checkpoint_every": 0},
              "eval": {"n_images": n_images, "splits": {"id": {"type": "rain", "preset": "small"},
                                                       "ood": {"type": "rain", "preset": "large"}}}}
    train(config, root / "battery" / "run", device=str(device), show_progress=False)
    names = [n for n in PROBES.names() if not getattr(PROBES.get(n), "study_level", False)]  # per model
    t0 = time.perf_counter()
    summary = measure(root / "battery" / "run", probes=names, out=root / "battery" / "r.h5",
                      device=str(device), show_progress=False)
    seconds = time.perf_counter() - t0
    return {"ok": summary["computed"] == len(names), "probes": names,
            "measure_s": round(seconds, 1), "target_s": 60, "meets": seconds <= 60, "n_images": n_images}


@stage("synthesis")
def check_synthesis(device: torch.device) -> dict:
    from gpu_train import synthesis

    return synthesis(device, 64 if device.type == "cuda" else 8, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None, help="keep the outputs here (default: a temporary folder)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"stage": "summary", "ok": None, "skipped": "no cuda"}))
        return
    on_gpu = device.type == "cuda"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        check_cuda(device)
        check_train(device, root, "small" if on_gpu else "tiny", 64 if on_gpu else 24)
        check_grid(device, root, "small" if on_gpu else "tiny", 64 if on_gpu else 24)
        check_measure(device, root)
        check_report(root)
        check_families(device, "paper" if on_gpu else "tiny", 128 if on_gpu else 24, 16 if on_gpu else 2)
        check_battery(device, root, "paper" if on_gpu else "tiny", 128 if on_gpu else 24, 256 if on_gpu else 8)
        check_synthesis(device)
    print(json.dumps({"stage": "summary", "ok": all(r["ok"] for r in RESULTS),
                      "failed": [r["stage"] for r in RESULTS if not r["ok"]],
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
