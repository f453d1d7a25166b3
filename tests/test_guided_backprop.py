"""Guided backpropagation: hand-computed gradients, a naive module-replacing reference, batching,
and the model (modules, inplace flags, user hooks, .grad) left untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens import GradCAM, GuidedBackprop, GuidedBackpropReLUModel, guided_gradcam
from camlens.errors import InputShapeError
from camlens.image import deprocess_image
from camlens.targets import ClassifierOutputTarget

from testnets import hooks_of


class _RefGuided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0).float() * (g > 0).float()


class RefReLU(nn.Module):
    def forward(self, x):
        return _RefGuided.apply(x)


class GNet(nn.Module):
    """conv -> ReLU(inplace) -> conv -> functional relu -> conv -> Tensor.relu_ -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.r1 = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)
        self.relu_fn = F.relu
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        a = self.r1(self.c1(x))
        a = self.relu_fn(self.c2(a))
        a = self.c3(a)
        a = a.relu_() if not hasattr(self, "_ref") else self._ref(a)
        return self.fc(a.mean(dim=(2, 3)))


def naive_reference(model: GNet, x: torch.Tensor, classes) -> torch.Tensor:
    ref = copy.deepcopy(model)
    ref.r1 = RefReLU()
    ref.relu_fn = _RefGuided.apply
    ref._ref = _RefGuided.apply
    out = []
    for i, c in enumerate(classes):
        xi = x[i : i + 1].clone().requires_grad_(True)
        ref(xi)[0, c].backward()
        out.append(xi.grad[0])
    return torch.stack(out)


@pytest.fixture
def gnet() -> GNet:
    return GNet().eval()


@pytest.fixture
def xb() -> torch.Tensor:
    return torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def test_hand_computed_two_layer_net():
    """y = v . relu(W x + b): guided gradient = W^T [(h > 0) * max(v, 0)]."""
    lin1, lin2 = nn.Linear(4, 5), nn.Linear(5, 1)
    with torch.no_grad():
        lin1.weight.copy_(torch.arange(20.0).reshape(5, 4) / 10 - 1)
        lin1.bias.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5]))
        lin2.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0]]))
    model = nn.Sequential(nn.Flatten(), lin1, nn.ReLU(), lin2, nn.Unflatten(1, (1,)))
    x = torch.tensor([0.5, -1.0, 2.0, 0.25]).reshape(1, 4, 1, 1)
    got = GuidedBackprop(model).explain(x, targets=[lambda o: o.reshape(-1)[0]])
    h = lin1.weight @ x.reshape(4) + lin1.bias
    expected = lin1.weight.t() @ ((h > 0).float() * lin2.weight[0].clamp(min=0))
    torch.testing.assert_close(got.reshape(4), expected.detach())
    # the plain gradient would differ (negative v entries pass where h > 0)
    plain = lin1.weight.t() @ ((h > 0).float() * lin2.weight[0])
    assert not torch.allclose(got.reshape(4), plain.detach())


def test_equals_naive_reference_batched(gnet, xb):
    classes = [0, 3, 1]
    got = GuidedBackprop(gnet).explain(xb, targets=[ClassifierOutputTarget(c) for c in classes])
    assert got.shape == (3, 3, 6, 6)
    torch.testing.assert_close(got, naive_reference(gnet, xb, classes), atol=1e-6, rtol=1e-5)


def test_numpy_layout_and_batch_equals_one_by_one(gnet, xb):
    gb = GuidedBackpropReLUModel(gnet)
    out = gb(xb, target_category=[2, 2, 0])
    assert out.shape == (3, 6, 6, 3) and out.dtype == np.float32
    single = np.concatenate([gb(xb[i : i + 1], target_category=[c]) for i, c in enumerate([2, 2, 0])])
    np.testing.assert_allclose(out, single, atol=1e-6)
    np.testing.assert_array_equal(out, gb(xb, target_category=[2, 2, 0]))  # repeated: identical
    assert deprocess_image(out[0]).shape == (6, 6, 3)


def test_model_left_untouched(gnet, xb):
    modules = list(gnet.modules())
    fired = []
    gnet.r1.register_forward_hook(lambda m, a, o: fired.append(1))
    gnet.c1.weight.grad = torch.full_like(gnet.c1.weight, 0.25)
    gnet.train()
    hooks = hooks_of(gnet)
    GuidedBackprop(gnet)(xb)
    assert list(gnet.modules()) == modules and gnet.r1.inplace is True and type(gnet.r1) is nn.ReLU
    assert hooks_of(gnet) == hooks and fired == [1]
    assert gnet.training and all(m.training for m in gnet.modules())
    assert torch.equal(gnet.c1.weight.grad, torch.full_like(gnet.c1.weight, 0.25))
    assert gnet.c2.weight.grad is None


def test_override_is_undone_after_an_error(gnet, xb):
    def bad(out):
        raise RuntimeError("target exploded")

    hooks = hooks_of(gnet)
    with pytest.raises(RuntimeError, match="target exploded"):
        GuidedBackprop(gnet).explain(xb[:1], targets=[bad])
    assert hooks_of(gnet) == hooks
    # ordinary ReLU gradients again: negative upstream gradients pass where the input is positive
    t = torch.tensor([1.0, -1.0], requires_grad=True)
    (torch.relu(t) * torch.tensor([-2.0, 3.0])).sum().backward()
    assert t.grad.tolist() == [-2.0, 0.0]


def test_default_target_is_top_class(gnet, xb):
    gb = GuidedBackprop(gnet)
    with torch.no_grad():
        top = gnet(xb).argmax(1).tolist()
    torch.testing.assert_close(gb.explain(xb), gb.explain(xb, targets=[ClassifierOutputTarget(c) for c in top]))


def test_guided_gradcam_numpy_and_tensor(gnet, xb):
    guided = GuidedBackprop(gnet)(xb, target_category=1)
    cam = GradCAM(gnet, "c3")(xb, target_category=1)
    ggc = guided_gradcam(guided, cam)
    assert isinstance(ggc, np.ndarray) and ggc.shape == (3, 6, 6, 3)
    np.testing.assert_allclose(ggc, guided * cam[..., None], rtol=1e-6)
    t = guided_gradcam(torch.from_numpy(guided), torch.from_numpy(cam))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), ggc, rtol=1e-6)
    np.testing.assert_allclose(guided_gradcam(guided[0], cam[0]), ggc[0], rtol=1e-6)
    with pytest.raises(InputShapeError, match=r"guided \(N, H, W, C\) and cam \(N, H, W\)"):
        guided_gradcam(guided, cam[:, :4])


def test_torchvision_resnet_batched():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    gb = GuidedBackprop(model)
    both = gb.explain(x, target_category=[3, 7])
    one = torch.cat([gb.explain(x[i : i + 1], target_category=[c]) for i, c in enumerate([3, 7])])
    torch.testing.assert_close(both, one, atol=1e-6, rtol=1e-5)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
