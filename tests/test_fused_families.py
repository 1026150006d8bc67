"""SwinIR's fused window attention and NAFNet's fused LayerNorm2d equal the written-out formulas (fp32)."""

from __future__ import annotations

import pytest
import torch

from probe.models import build
from probe.models.nafnet import LayerNorm2d, layer_norm2d_reference
from probe.models.swinir import WindowAttention, attention_reference, shifted_window_mask, window_partition


def _reference_window_attention(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The previous (unfused, per-window 5-D) computation with the same weights."""
    b, nw, n, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
    q, k, v = qkv.unbind(0)  # (B, nW, heads, N, d)
    bias = attn.relative_position_bias_table[attn.relative_position_index.reshape(-1)]
    bias = bias.reshape(n, n, heads).permute(2, 0, 1)
    if mask is not None:
        bias = bias.unsqueeze(0) + mask.unsqueeze(1)
    out = attention_reference(q, k, v, bias)
    return attn.proj(out.transpose(2, 3).reshape(b, nw, n, c))


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("shifted", [False, True])
def test_fused_window_attention_equals_the_written_out_formula(monkeypatch, pad, shifted):
    monkeypatch.setattr(WindowAttention, "pad_head_dim", pad)
    torch.manual_seed(0)
    attn = WindowAttention(dim=30, window_size=4, num_heads=3)  # head dim 10: padded to 16 when pad
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1.0)  # a bias large enough to matter
    y = torch.randn(2, 8, 12, 30)
    mask = shifted_window_mask(8, 12, 4, 2) if shifted else None
    x = window_partition(torch.roll(y, (-2, -2), (1, 2)) if shifted else y, 4).requires_grad_(True)
    ours = attn(x, mask)
    ref = _reference_window_attention(attn, x, mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    g_ours = torch.autograd.grad(ours.square().sum(), [x, attn.relative_position_bias_table])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, attn.relative_position_bias_table])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if shifted:  # the mask did something: without it the result differs
        assert not torch.allclose(ours, _reference_window_attention(attn, x, None), atol=1e-4)


def test_swinir_keeps_its_probe_points_and_padding_changes_nothing(monkeypatch):
    torch.manual_seed(0)
    model = build("swinir", "tiny").eval()
    points = model.probe_points()
    assert points[0] == "hook_head" and points[-1] == "hook_output"
    assert "layers.0.blocks.1.hook_out" in points and "layers.1.hook_out" in points and "hook_body" in points
    x = torch.rand(2, 3, 21, 30)
    seen = []
    handles = [dict(model.named_modules())[p].register_forward_hook(lambda m, a, o, p=p: seen.append(p))
               for p in points]
    with torch.no_grad():
        plain = model(x)
    for h in handles:
        h.remove()
    assert seen == points
    monkeypatch.setattr(WindowAttention, "pad_head_dim", True)
    with torch.no_grad():
        padded = model(x)
    torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_nafnet_layernorm2d_equals_the_written_out_formula(channels_last):
    torch.manual_seed(0)
    norm = LayerNorm2d(8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(3, 8, 5, 7) * 3 + 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours = norm(x)
    ref = layer_norm2d_reference(x, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(torch.autograd.grad(ours.sin().sum(), [x, norm.weight, norm.bias]),
                    torch.autograd.grad(ref.sin().sum(), [x, norm.weight, norm.bias])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_nafnet_under_bf16_autocast_normalises_in_float32_and_keeps_activations_in_bf16():
    from probe.models.nafnet import layer_norm2d_reference

    torch.manual_seed(0)
    model = build("nafnet", "tiny").eval()
    with torch.no_grad():
        for module in model.modules():  # non-zero beta/gamma so every branch contributes
            if hasattr(module, "beta"):
                module.beta.fill_(0.5)
                module.gamma.fill_(0.5)
        x = torch.rand(2, 3, 24, 24)
        ref = model(x)
        seen = []
        norm = model.encoders[0].blocks[0].norm1
        handle = norm.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
        block_out = []
        handle2 = model.encoders[0].blocks[0].register_forward_hook(lambda m, a, o: block_out.append(o.dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
        handle.remove()
        handle2.remove()
    (inp, out), = seen
    assert inp.dtype == out.dtype == torch.bfloat16 and block_out == [torch.bfloat16]  # no float32 round trip
    # statistics in float32: equal to the float32 formula on the same bf16 input, up to the final bf16 rounding
    exact = layer_norm2d_reference(inp.float(), norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out.float(), exact, rtol=1e-2, atol=1e-2)
    assert torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.05  # bf16 rounding, not a different network


def test_swinir_grad_checkpoint_gives_the_same_gradients_and_bf16_stream():
    torch.manual_seed(0)
    plain = build("swinir", "tiny")
    recomputed = build("swinir", "tiny", grad_checkpoint=True)
    recomputed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 16, 16)
    grads = []
    for model in (plain, recomputed):
        model.train()
        model.zero_grad()
        model(x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7)
    dtypes = []
    plain.layers[0].blocks[0].register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain.eval()(x)
    assert dtypes == [torch.bfloat16]  # layer norms no longer turn the residual stream into float32
