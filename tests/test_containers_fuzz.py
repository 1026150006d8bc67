"""Property-based: any nesting of containers, wrapper prefixes and float dtypes loads exactly the weights, or is
refused in one line naming the file — never a model with initial values left in it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import CheckpointError
from probe.models.checkpoint import load_model
from probe.models.containers import CONTAINER_KEYS, PREFIXES

ARCHS = Path(__file__).parent / "external_archs"
sys.path.insert(0, str(ARCHS))
import nets  # noqa: E402

sys.path.remove(str(ARCHS))
ARCH = f"{ARCHS / 'nets.py'}:WithBN"
REFERENCE = {k: (torch.randn(v.shape, generator=torch.Generator().manual_seed(5)) * 0.1 + 0.01
                 if v.is_floating_point() else v) for k, v in nets.WithBN().state_dict().items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(containers=st.lists(st.sampled_from(CONTAINER_KEYS), max_size=2),
       prefixes=st.lists(st.sampled_from(PREFIXES), max_size=2),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64]),
       extras=st.booleans(), drop=st.integers(0, 2), fmt=st.sampled_from(["pth", "safetensors"]))
def test_random_containers_load_exactly_or_refuse(tmp_path, containers, prefixes, dtype, extras, drop, fmt):
    prefix = "".join(prefixes)
    keys = list(REFERENCE)[drop:]  # drop > 0: the file lacks some of the network's tensors
    state = {prefix + k: (REFERENCE[k].to(dtype) if REFERENCE[k].is_floating_point() else REFERENCE[k])
             for k in keys}
    path = tmp_path / f"ckpt_{abs(hash((tuple(containers), prefix, str(dtype), extras, drop)))}.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        obj = state
        for key in reversed(containers):
            obj = {key: obj}
        if extras:
            obj = {**obj, "epoch": 3, "meta": {"note": "x"}} if isinstance(obj, dict) else obj
        torch.save(obj, path)
    try:
        model = load_model(path, arch=ARCH, strict=False)
    except CheckpointError as exc:
        text = str(exc)
        assert path.name in text and "\n" not in text
        assert drop > 0, f"a complete file was refused: {text}"
        return
    assert drop == 0, "a file lacking tensors loaded without an allow pattern"
    own = model.state_dict()
    for k, v in REFERENCE.items():
        expected = v.to(dtype).float() if v.is_floating_point() else v
        assert torch.equal(own[k], expected), k
