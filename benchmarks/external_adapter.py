"""Cost of running a user network through probe's external adapter vs calling the bare ``nn.Module``.

The adapter (``probe.load_model(weights, arch=...)``) pads to a multiple, picks the image out of a multi-stage
list output, casts dtypes and crops back. The reference is what a user would otherwise write: pad by hand
(reflect, bottom/right), call the network, take ``[0]``, crop. Same weights, same inputs; outputs must be
identical. Interleaved repetitions, median reported (CPU process time, the machine is shared). Claim: the
adapter adds ≤ 5 % per forward (target ratio ≤ 1.05).

    python benchmarks/external_adapter.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "external_archs"))

import nets  # noqa: E402

from probe.models.checkpoint import load_model  # noqa: E402


def bare(net: torch.nn.Module, x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    z = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")
    return net(z)[0][..., :h, :w]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    width, size, batch, reps = (16, 61, 2, 5) if args.quick else (32, 125, 4, 9)
    net = nets.MultiStage(width=width, stages=3).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net_g.pth"
        torch.save({"params_ema": {"module." + k: v for k, v in net.state_dict().items()}}, path)
        ours = load_model(path, arch=f"{ROOT / 'tests' / 'external_archs' / 'nets.py'}:MultiStage",
                          arch_kwargs={"width": width, "stages": 3}, pad_multiple=8)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        same = torch.equal(ours(x), bare(net, x, 8))
        for _ in range(2):  # warm-up
            ours(x), bare(net, x, 8)
        t_ours, t_ref = [], []
        for _ in range(reps):
            t0 = time.process_time()
            ours(x)
            t_ours.append(time.process_time() - t0)
            t0 = time.process_time()
            bare(net, x, 8)
            t_ref.append(time.process_time() - t0)
    o, r = statistics.median(t_ours), statistics.median(t_ref)
    print(f"{'':10} {'ms/forward':>12}")
    print(f"{'adapter':10} {o * 1e3:12.2f}\n{'bare':10} {r * 1e3:12.2f}\nidentical outputs: {same}")
    ratio = o / r
    print(json.dumps({"benchmark": "external_adapter", "ours": round(o * 1e3, 3), "reference": round(r * 1e3, 3),
                      "unit": "ms/forward (CPU time)", "ratio": round(ratio, 3), "target": 1.05,
                      "meets": bool(ratio <= 1.05 and same), "identical": same,
                      "machine": f"{os.cpu_count()} cores, cpu", "input": [batch, 3, size, size]}))


if __name__ == "__main__":
    main()
