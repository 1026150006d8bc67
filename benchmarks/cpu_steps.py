"""Training step times on CPU, per family at the demo's scale (tiny, 48 px, batch 8, fp32, one thread): the
numbers behind :data:`probe.grid.estimate.CPU_STEP_MS` (what ``probe grid run SPEC --dry-run`` prints per rung).

    python benchmarks/cpu_steps.py [--quick] [--families resnet,unet] [--threads 1]

Reference (BENCHMARKS.md): a bare PyTorch loop, same model, batch, optimizer and loss, data pre-generated in
memory. ours: probe's trainer, timed between two logged steps (model build, evaluation set and final
validation outside the window). One thread per process, as the local grid executor runs its workers.
The machine is shared: read the table with the load average it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gpu_steps import FAMILY_NAMES, bare_step, trainer_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--families", default=",".join(FAMILY_NAMES))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    n1, n2 = (10, 30) if args.quick else (20, 80)
    rows = {}
    for family in args.families.split(","):
        bare, _ = bare_step(family, "tiny", 48, 8, "fp32", False, n2 - n1, device)
        ours, _ = trainer_step(family, "tiny", 48, 8, "fp32", n1, n2, device)
        rows[family] = {"trainer_ms": round(ours, 1), "bare_ms": round(bare, 1)}
        print(f"{family:8s} trainer {ours:7.1f} ms/step   bare {bare:7.1f} ms/step", flush=True)
    load = os.getloadavg()[0]
    ours = sum(r["trainer_ms"] for r in rows.values())
    ref = sum(r["bare_ms"] for r in rows.values())
    print(json.dumps({"benchmark": "cpu_steps", "ours": round(ours, 1), "reference": round(ref, 1),
                      "unit": "ms/step (sum over families)", "ratio": round(ours / ref, 3), "target": None,
                      "meets": None, "per_family": rows, "threads": args.threads,
                      "machine": f"{os.cpu_count()} cores, cpu, load {load:.1f}"}))


if __name__ == "__main__":
    main()
