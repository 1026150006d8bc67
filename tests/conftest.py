"""Shared fixtures: tiny configs so the whole suite stays fast on 2 cores."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("PROBE_QUIET", "1")
torch.set_num_threads(1)

TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "model": {"family": "resnet", "size": "tiny"},
    "data": {"background": "smooth", "n_backgrounds": 4, "patch": 24, "clean_fraction": 0.1},
    "degradation": {"type": "rain", "preset": "small"},
    "train": {"iterations": 6, "batch": 4, "lr": 1e-3, "checkpoint_every": 2, "log_every": 2},
    "eval": {"n_images": 4, "splits": {"id": {"type": "rain", "preset": "small"},
                                       "ood": {"type": "rain", "preset": "large"}}},
}


@pytest.fixture
def tiny_config() -> dict:
    return copy.deepcopy(TINY_CONFIG)


#: a tiny two-source study with every probe (shared by the measurement-wing tests): smooth and dead leaves
#: backgrounds x n_backgrounds 1 and 4 = 4 tiny ResNets, 4 evaluation images of 16 px, cheap probe settings
TWO_SOURCE_SPEC = """
[study]
name = "twosource"
probes = ["generalization", "decomposition", "activations", "cka", "ddr", "attribution", "shortcut"]
[study.probe_params.attribution]
method = "ig"
objective = "removed"
steps = 4
n_images = 3
[study.probe_params.activations]
n_images = 3
batch_size = 3
pixels_per_class = 8
[study.probe_params.cka]
n_images = 4
batch_size = 4
[study.probe_params.ddr]
n_backgrounds = 3
degradations = [{type = "rain", preset = "small"}, {type = "rain", preset = "large"}]
[base]
seed = 0
device = "cpu"
[base.model]
family = "resnet"
size = "tiny"
[base.data]
patch = 16
[base.degradation]
type = "rain"
preset = "small"
[base.train]
iterations = 3
batch = 2
[base.eval]
n_images = 4
[base.eval.splits.id]
type = "rain"
preset = "small"
[base.eval.splits.ood]
type = "rain"
preset = "large"
[axes]
background = ["smooth", "dead_leaves"]
n_backgrounds = [1, 4]
"""


@pytest.fixture(scope="session")
def trained_grid(tmp_path_factory):
    """Factory ``trained_grid(spec_text, name) -> grid directory``: trains a tiny study spec once per test
    session (cached by its text) and shares it; tests copy what they change."""
    from probe.grid.runner import run_grid

    cache: dict[str, object] = {}

    def make(spec: str = TWO_SOURCE_SPEC, name: str = "twosource"):
        if spec not in cache:
            root = tmp_path_factory.mktemp(name)
            (root / f"{name}.toml").write_text(spec)
            summary = run_grid(root / f"{name}.toml", root / "models", workers=1, show_progress=False)
            assert summary["failed"] == 0, summary
            cache[spec] = root / "models"
        return cache[spec]

    return make
