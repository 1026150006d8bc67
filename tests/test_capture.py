"""Feature capture: copies survive in-place ops, repeated calls, user modules, streaming == all at once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probe.errors import ConfigError
from probe.methods.capture import FeatureCapture, collect_features, even_batches, iterate_features, resolve_layers
from probe.methods.reducers import (
    PixelSampler,
    balanced_pixel_positions,
    flatten,
    gather_pixels,
    pool,
    random_pixel_positions,
    to_nchw,
)
from probe.models.base import HookPoint


class InplaceNet(nn.Module):
    """conv → HookPoint → in-place ReLU → shared conv applied twice → in-place add."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.hook_pre = HookPoint()
        self.relu = nn.ReLU(inplace=True)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.hook_out = HookPoint()

    def forward(self, x):
        y = self.hook_pre(self.conv(x))
        self.relu(y)  # modifies the tensor the hook saw
        y = self.shared(y)
        y = self.shared(y)
        z = self.hook_out(y)
        z += 1.0  # in place again, after the HookPoint
        return z


def test_clone_survives_inplace_relu_and_add():
    model = InplaceNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with FeatureCapture(model, ["hook_pre", "hook_out"]) as cap:
        out = model(x)
    expected_pre = model.conv(x)
    assert (expected_pre < 0).any()  # the in-place ReLU would have zeroed these
    torch.testing.assert_close(cap.features["hook_pre"], expected_pre)
    torch.testing.assert_close(cap.features["hook_out"], out - 1.0)
    # a reducer returning a view (flatten) is copied too
    with FeatureCapture(model, ["hook_pre"], reducer=flatten) as cap:
        model(x)
    torch.testing.assert_close(cap.features["hook_pre"], expected_pre.reshape(2, -1))


def test_module_called_twice_suffix_or_error():
    model = InplaceNet().eval()
    x = torch.randn(1, 3, 8, 8)
    with FeatureCapture(model, ["shared", "hook_out"]) as cap:
        model(x)
        first = dict(cap.features)
        model(x)  # a new forward pass starts a new record
    assert list(first) == ["shared", "shared#1", "hook_out"]
    assert list(cap.features) == ["shared", "shared#1", "hook_out"]
    torch.testing.assert_close(first["shared#1"], first["hook_out"])
    with pytest.raises(ConfigError, match="called 2 times"), FeatureCapture(model, ["shared"], on_repeat="error"):
        model(x)


def test_user_module_by_name_and_hookpoints_default():
    user = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU(inplace=True), nn.Sequential(nn.Conv2d(5, 2, 1)))
    feats = collect_features(user, torch.rand(3, 3, 6, 6), ["0", "2.0"], batch_size=2)
    assert feats["0"].shape == (3, 5, 6, 6) and feats["2.0"].shape == (3, 2, 6, 6)
    assert (feats["0"] < 0).any()  # captured before the in-place ReLU
    assert resolve_layers(InplaceNet()) == ["hook_pre", "hook_out"]
    with pytest.raises(ConfigError, match="no HookPoints"):
        resolve_layers(user)


def test_unknown_layer_lists_probe_points():
    with pytest.raises(ConfigError, match="available probe points: hook_pre, hook_out"):
        resolve_layers(InplaceNet(), ["hook_nope"])
    with pytest.raises(ConfigError, match="unknown layer 'x'"):
        list(iterate_features(nn.Sequential(nn.Identity()), torch.rand(2, 3, 4, 4), ["x"]))


def test_streaming_equals_all_at_once_and_reducers():
    model = InplaceNet().eval()
    x = torch.randn(7, 3, 8, 8)
    whole = collect_features(model, x, None, batch_size=7)
    batches = list(iterate_features(model, x, None, batch_size=3))
    assert [b["hook_pre"].shape[0] for b in batches] == [2, 3, 2]
    for name in whole:
        torch.testing.assert_close(torch.cat([b[name] for b in batches]), whole[name])
    pooled = collect_features(model, x, None, batch_size=2, reducer=pool)
    torch.testing.assert_close(pooled["hook_out"], whole["hook_out"].mean(dim=(2, 3)))
    # pixel samples: same places whatever the batching, image-major rows
    positions = random_pixel_positions(7, 5, seed=3)
    a = collect_features(model, x, ["hook_pre"], batch_size=2, reducer=PixelSampler(positions))["hook_pre"]
    b = collect_features(model, x, ["hook_pre"], batch_size=7, reducer=PixelSampler(positions))["hook_pre"]
    assert a.shape == (35, 4)
    torch.testing.assert_close(a, b)
    ys, xs = (positions[2, 4] * 8).long()
    torch.testing.assert_close(a[2 * 5 + 4], whole["hook_pre"][2, :, ys, xs])


def test_helpers_layouts_batches_and_balanced_pixels():
    assert [(s.start, s.stop) for s in even_batches(10, 4)] == [(0, 3), (3, 7), (7, 10)]
    assert [(s.start, s.stop) for s in even_batches(5, 4, min_size=4)] == [(0, 5)]
    with pytest.raises(ConfigError):
        even_batches(3, 4, min_size=4)
    tokens = torch.arange(2 * 12 * 3, dtype=torch.float32).reshape(2, 12, 3)  # (N, L=4*3, C)
    maps = to_nchw(tokens, (8, 6))
    assert maps.shape == (2, 3, 4, 3)
    assert maps[1, 2, 1, 0] == tokens[1, 3, 2]
    mask = torch.zeros(3, 1, 6, 6)
    mask[0, 0, :2] = 1
    mask[1, 0, :, :1] = 1  # image 2 has no rain: contributes nothing
    pos, img, lab = balanced_pixel_positions(mask, per_class=4, seed=0)
    assert pos.shape == (16, 2) and sorted(set(img.tolist())) == [0, 1]
    assert int(lab.sum()) == 8
    feat = mask.repeat(1, 2, 1, 1)
    got = gather_pixels(feat, img, pos)
    torch.testing.assert_close(got[:, 0], lab.float())
    pos2, _, _ = balanced_pixel_positions(mask, per_class=4, seed=0)
    torch.testing.assert_close(pos, pos2)
