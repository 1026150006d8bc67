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
