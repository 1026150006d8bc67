"""Where one training step of a family spends its GPU time: the top kernels of a few profiled steps
(``torch.profiler``), peak memory, and which fused attention kernels accept SwinIR's call.

    python benchmarks/gpu_profile.py [--families swinir,nafnet] [--precisions fp32,bf16] [--top 12]

Not a claim of its own (no target): the diagnosis behind ``gpu_train.py``'s numbers. Prints one table per
(family, precision) and one JSON line each. Without CUDA it prints one line saying so (``--device cpu`` runs
it at tiny sizes, to check the script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gpu_steps import bare_step, is_convolutional, mib, reset_peak  # noqa: E402


def profile_family(family: str, size: str, patch: int, batch: int, precision: str, top: int,
                   device: torch.device) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    conv = is_convolutional(family) and device.type == "cuda"
    bare_step(family, size, patch, batch, precision, conv, 2, device)  # warm-up (cuDNN autotune, allocator)
    reset_peak(device)
    with profile(activities=activities) as prof:
        ms, peak = bare_step(family, size, patch, batch, precision, conv, 3, device, warmup=1)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)
    total = sum(getattr(e, key, 0) for e in events) or 1
    rows = [{"name": e.key[:70], "calls": e.count, "share": round(getattr(e, key, 0) / total, 3)}
            for e in events[:top]]
    print(f"\n{family} {precision}: {ms:.1f} ms/step, peak {mib(peak)} MiB")
    for r in rows:
        print(f"  {r['share']:6.1%} {r['calls']:6d}  {r['name']}")
    return {"family": family, "precision": precision, "ms": round(ms, 2), "peak_mib": mib(peak), "top": rows}


def sdpa_backends(device: torch.device, dtype: torch.dtype) -> dict:
    """Which SDPA backend accepts SwinIR-paper's attention call (B=16, 128 px: 1536 window-heads, N=64, d=10
    padded to 16) with a bias that requires grad; the error text where one refuses."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(16, 1536, 64, 16, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, 1536, 64, 64, device=device, dtype=dtype, requires_grad=True)
    out = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        for with_bias in (True, False):
            try:
                with sdpa_kernel([backend]):
                    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias if with_bias
                                                                         else None)
                    y.sum().backward()
                verdict = "ok"
            except Exception as exc:  # report, never stop
                verdict = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            out[f"{backend.name}{'+bias' if with_bias else ''}"] = verdict
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--families", default="swinir,nafnet")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_profile", "skipped": "no cuda"}))
        return
    on_gpu = device.type == "cuda"
    size, patch, batch = ("paper", 128, 16) if on_gpu else ("tiny", 32, 2)
    for family in [f for f in args.families.split(",") if f]:
        for precision in [p for p in args.precisions.split(",") if p]:
            try:
                line = profile_family(family, size, patch, batch, precision, args.top, device)
            except Exception as exc:  # one failing family never stops the rest
                line = {"family": family, "precision": precision, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(line))
    if on_gpu:
        for dtype in (torch.float32, torch.bfloat16):
            print(json.dumps({"sdpa_backends": str(dtype), **sdpa_backends(device, dtype)}))


if __name__ == "__main__":
    main()
