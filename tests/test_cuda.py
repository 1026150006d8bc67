"""On a CUDA machine: train → grid (local and batched) → measure with every probe → report, on the GPU, and the
GPU results agree with the CPU. Skipped without CUDA (CPU CI covers the same paths on a fake accelerator in
test_device.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

from probe.grid.runner import run_grid  # noqa: E402
from probe.models.checkpoint import load_model  # noqa: E402
from probe.probes import PROBES  # noqa: E402
from probe.probes.evaldata import eval_data_for_run  # noqa: E402
from probe.train import train  # noqa: E402
from tests.conftest import TINY_CONFIG  # noqa: E402
from tests.test_device import GRID, SMALL_PARAMS  # noqa: E402


def test_grid_measure_report_on_cuda(tmp_path):
    from probe.measure import measure
    from probe.report.build import build_report
    from probe.store import read_metrics

    (tmp_path / "study.toml").write_text(GRID)
    for executor in ("local", "batched"):
        summary = run_grid(tmp_path / "study.toml", tmp_path / executor, executor=executor, workers=1,
                           device="cuda", show_progress=False)
        assert summary["done"] == 2 and summary["failed"] == 0
    record = json.loads((tmp_path / "local" / "n_backgrounds-1" / "run.json").read_text())
    assert record["device"].startswith("cuda") and record["step"]["precision"] == "bf16"
    measured = measure(tmp_path / "local", out=tmp_path / "rep" / "results.h5", device="cuda", show_progress=False)
    # every probe on both models, plus the shortcut score's probe-set attribution per model
    assert measured["computed"] == 2 * len(SMALL_PARAMS) + 2 and "cka_models" in measured
    assert set(read_metrics(tmp_path / "rep" / "results.h5")["probe"]) >= set(SMALL_PARAMS)
    assert build_report(tmp_path / "rep").is_file()


@pytest.mark.parametrize("name", sorted(SMALL_PARAMS))
def test_probe_on_cuda_agrees_with_cpu(tmp_path, name):
    config = copy.deepcopy(TINY_CONFIG)
    config["eval"]["n_images"] = 8
    train(config, tmp_path / "run", device="cpu", show_progress=False)
    data = eval_data_for_run(tmp_path / "run")
    params = SMALL_PARAMS[name]
    cpu = PROBES.get(name)(**params).run(load_model(tmp_path / "run"), data).metrics
    gpu = PROBES.get(name)(**params).run(load_model(tmp_path / "run", device="cuda"), data).metrics
    assert [(m["split"], m["metric"]) for m in cpu] == [(m["split"], m["metric"]) for m in gpu]
    # the quadrature error of integrated gradients is a small difference of large sums: compare it on the
    # scale of the objective, every other number to float32 rounding (probes run without TF32)
    scale = max([1.0] + [abs(m["value"]) for m in cpu if m["metric"] == "objective_value"])
    for a, b in zip(cpu, gpu):
        if a["metric"] in ("convergence_delta", "relative_delta"):
            assert abs(a["value"] - b["value"]) <= 1e-3 * scale, (a, b)
        else:
            assert np.isclose(a["value"], b["value"], rtol=2e-4, atol=1e-5, equal_nan=True), (a, b)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_trainer_precisions_on_cuda(tmp_path, precision):
    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["precision"] = precision
    record = train(config, tmp_path / precision, device="cuda", show_progress=False)
    assert record["status"] == "done" and record["step"]["precision"] == precision
    assert record["step"]["channels_last"] is True  # resnet is convolutional
    assert np.isfinite(record["metrics"]["loss"])


def test_fused_swinir_attention_on_cuda_equals_the_reference():
    from probe.models.swinir import WindowAttention, shifted_window_mask, window_partition
    from tests.test_fused_families import _reference_window_attention

    torch.manual_seed(0)
    attn = WindowAttention(dim=60, window_size=8, num_heads=6).cuda()  # head dim 10: padded
    x = window_partition(torch.randn(2, 16, 16, 60, device="cuda"), 8)
    mask = shifted_window_mask(16, 16, 8, 4, device="cuda")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):  # raises if the fused kernel cannot take it
        ours = attn(x, mask)
    torch.testing.assert_close(ours, _reference_window_attention(attn, x, mask), rtol=1e-4, atol=1e-4)
