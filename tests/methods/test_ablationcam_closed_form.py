"""AblationCAM's closed form for a pooled linear head: equal to the tail path, used only where exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens import AblationCAM
from camlens.targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from ._perturb_nets import PNet, ResNetish
from .test_ablationcam import conv_channel, naive_ablation


class PoolFlattenFc(ResNetish):
    """torchvision style: AdaptiveAvgPool2d(1) -> torch.flatten -> Dropout -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(self.blocks(self.stem(x))), 1)))


class FunctionalHead(ResNetish):
    """F.adaptive_avg_pool2d -> view(x.size(0), -1) -> F.linear with the fc's parameters."""

    def forward(self, x):
        a = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return F.linear(a.view(a.size(0), -1), self.fc.weight, self.fc.bias)


class KeepdimMean(ResNetish):
    def forward(self, x):
        return self.fc(torch.mean(self.blocks(self.stem(x)), dim=(-2, -1), keepdim=True).flatten(1))


def _targets(classes):
    return [ClassifierOutputTarget(c) for c in classes]


@pytest.mark.parametrize("cls", [ResNetish, PoolFlattenFc, FunctionalHead, KeepdimMean])
@pytest.mark.parametrize("value", [0.0, -1.5])
def test_closed_form_equals_tail_path_and_reference(cls, value):
    model = cls().eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    closed = AblationCAM(model, "blocks.2", batch_size=4, ablation_value=value, progress=False)
    tail = AblationCAM(model, "blocks.2", batch_size=4, ablation_value=value, progress=False, closed_form=False)
    a = closed.explain(x, _targets([0, 3, 1]))
    b = tail.explain(x, _targets([0, 3, 1]))
    assert closed.last_path == {"blocks.2": "closed-form"} and tail.last_path == {"blocks.2": "tail"}
    torch.testing.assert_close(a.layer_maps[0], b.layer_maps[0], atol=1e-5, rtol=1e-5)
    ref = naive_ablation(model, model.blocks[2], x, [0, 3, 1], conv_channel, value=value)
    np.testing.assert_allclose(a.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)


def test_closed_form_by_hand_and_any_target_of_the_logits():
    """y_k = target(z + (v - mean(A_k)) W[:, k]); with a softmax target too."""
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    cam = AblationCAM(model, "blocks.2", progress=False)
    targets = [ClassifierOutputSoftmaxTarget(2), ClassifierOutputSoftmaxTarget(4)]
    exp = cam.explain(x, targets)
    assert cam.last_path == {"blocks.2": "closed-form"}
    with torch.no_grad():
        a = model.blocks(model.stem(x)).double()
        w, b = model.fc.weight.double(), model.fc.bias.double()
        m = a.mean(dim=(2, 3))
        z = m @ w.T + b
    expected = []
    for i, c in enumerate([2, 4]):
        y = torch.softmax(z[i], 0)[c]
        yk = torch.stack([torch.softmax(z[i] - m[i, k] * w[:, k], 0)[c] for k in range(6)])
        expected.append((((y - yk) / y)[:, None, None] * a[i]).sum(0))
    torch.testing.assert_close(exp.layer_maps[0].double(), torch.stack(expected), atol=1e-5, rtol=1e-5)


def test_no_tail_pass_beyond_the_checks():
    model = ResNetish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    seen = []
    handle = model.fc.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        AblationCAM(model, "blocks.2", batch_size=4, progress=False)(x, 1)
    finally:
        handle.remove()
    # capture (2 images), the tail's check on the captured activation (2), the closed form's check (8 rows)
    assert seen == [2, 2, 8]


@pytest.mark.parametrize("layer, cls", [("blocks.1", ResNetish), ("feat", PNet)])
def test_not_used_where_the_tail_is_not_pooling_plus_linear(layer, cls):
    model = cls().eval()
    x = torch.randn(1, *((3, 8, 8) if cls is ResNetish else (2, 6, 6)))
    cam = AblationCAM(model, layer, progress=False)
    cam(x, 0)
    assert cam.last_path == {layer: "tail"}


def test_check_against_the_tail_rejects_an_inexact_closed_form():
    """A hook on the (leaf) fc changes the output: the tail runs it, the closed form cannot, so the
    per-call check keeps the tail path."""
    model = ResNetish().eval()
    handle = model.fc.register_forward_hook(lambda m, a, o: torch.tanh(o))
    try:
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
        cam = AblationCAM(model, "blocks.2", progress=False)
        exp = cam.explain(x, _targets([1, 2]))
        assert cam.last_path == {"blocks.2": "tail"}
        ref = naive_ablation(model, model.blocks[2], x, [1, 2], conv_channel)
        np.testing.assert_allclose(exp.layer_maps[0].numpy(), ref.numpy(), atol=1e-5, rtol=1e-5)
    finally:
        handle.remove()


def test_torchvision_resnet18_closed_form_equals_tail():
    """Exact in float64; in float32 the paths differ by rounding only (see test_resnet_tail_equals_full)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # layer4: 2x2
    for m, xx, tol in ((model, x, 1e-3), (copy.deepcopy(model).double(), x.double(), 1e-7)):
        closed = AblationCAM(m, "layer4[-1]", batch_size=128, progress=False)
        a = closed.explain(xx, _targets([3]))
        assert closed.last_path == {"layer4.1": "closed-form"}
        tail = AblationCAM(m, "layer4[-1]", batch_size=128, progress=False, closed_form=False)
        b = tail.explain(xx, _targets([3]))
        torch.testing.assert_close(a.cam, b.cam, atol=tol, rtol=tol)
        torch.testing.assert_close(a.layer_maps[0], b.layer_maps[0], atol=tol * float(b.layer_maps[0].abs().max()), rtol=tol)
