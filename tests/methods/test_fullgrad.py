"""FullGrad (Srinivas & Fleuret 2019): per-image, per-channel reference on a tiny net; skipped layers; errors; peer parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlens import FullGrad
from camlens.engine import CamLensWarning
from camlens.errors import CamLensError, LayerNotFoundError
from camlens.methods.fullgrad import effective_bias
from camlens.targets import ClassifierOutputTarget

from testnets import hooks_of

CLASSES = [0, 3, 4]


class BiasNet(nn.Module):
    """conv1 (bias) -> bn -> ReLU(inplace) -> conv2 (bias, stride 2) -> tanh -> GAP -> fc.

    ``aux`` runs only in training mode (like Inception's auxiliary head) and ``dead`` runs but does
    not reach the output: FullGrad must skip both.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.aux = nn.Conv2d(3, 2, 1)
        self.dead = nn.BatchNorm2d(3)
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            for bn in (self.bn, self.dead):
                bn.running_mean.copy_(torch.randn(3, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.bn(self.conv1(x)))
        if self.training:
            self.aux(a)
        self.dead(a)  # computed, never used
        return self.fc(torch.tanh(self.conv2(a)).mean(dim=(2, 3)))


@pytest.fixture
def net() -> BiasNet:
    return BiasNet().eval()


@pytest.fixture
def x8() -> torch.Tensor:
    return torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(3))


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def naive_fullgrad(net: BiasNet, x: torch.Tensor, classes: list[int]) -> np.ndarray:
    """Raw FullGrad saliency (before the final normalisation), one image and one channel at a time."""
    bn = net.bn
    bn_bias = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        z1 = F.conv2d(xi, net.conv1.weight, net.conv1.bias, padding=1)
        z2 = F.batch_norm(z1, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        z3 = F.conv2d(F.relu(z2), net.conv2.weight, net.conv2.bias, stride=2, padding=1)
        score = F.linear(torch.tanh(z3).mean(dim=(2, 3)), net.fc.weight, net.fc.bias)[0, classes[i]]
        gx, g1, g2, g3 = torch.autograd.grad(score, [xi, z1, z2, z3])
        total = np.zeros(x.shape[-2:])
        ix = (xi * gx).detach()[0].numpy()
        for c in range(ix.shape[0]):
            total += _minmax(np.abs(ix[c]))
        for grad, bias in ((g1, net.conv1.bias.detach()), (g2, bn_bias), (g3, net.conv2.bias.detach())):
            for c in range(grad.shape[1]):
                term = torch.from_numpy(_minmax(np.abs((bias[c] * grad[0, c]).numpy())))
                total += F.interpolate(term[None, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
        out.append(total)
    return np.stack(out)


def test_fullgrad_by_hand(net, x8):
    exp = FullGrad(net).explain(x8, [ClassifierOutputTarget(c) for c in CLASSES])
    raw = naive_fullgrad(net, x8, CLASSES)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.cam.numpy(), np.stack([_minmax(r) for r in raw]), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(exp.scores.numpy(), net(x8)[torch.arange(3), CLASSES].numpy(), rtol=1e-5)


def test_effective_batchnorm_bias(net):
    bn = net.bn
    expected = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(effective_bias(bn), expected.detach())
    torch.testing.assert_close(effective_bias(net.conv1), net.conv1.bias.detach())


def test_layers_without_gradient_are_skipped_silently(net, x8):
    cam = FullGrad(net)
    assert {"aux", "dead", "conv1", "bn", "conv2"} == set(cam.bias_layer_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the idle nor the dead layer may warn
        out = cam(x8, targets=[ClassifierOutputTarget(c) for c in CLASSES])
    assert np.isfinite(out).all()


def test_outputs_on_model_device_and_left_as_found(x8):
    net = BiasNet()
    net.train()
    before = hooks_of(net)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    exp = FullGrad(net).explain(x8, [ClassifierOutputTarget(1)] * 3)
    assert exp.cam.shape == (3, 8, 8) and exp.cam.dtype == torch.float32
    assert exp.cam.device == x8.device and exp.layer_maps[0].shape == (3, 8, 8)
    assert float(exp.cam.amax(dim=(1, 2)).min()) == pytest.approx(1.0)
    assert hooks_of(net) == before and net.training
    assert all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_target_layers_are_ignored_with_a_warning(net, x8):
    with pytest.warns(CamLensWarning, match="ignores target_layers"):
        cam = FullGrad(net, target_layers=[net.conv2])
    np.testing.assert_allclose(cam(x8, 2), FullGrad(net)(x8, 2), atol=1e-6)
    assert cam.target_layer_names == ["input + 5 bias layers"]


def test_errors(net):
    with pytest.raises(CamLensError, match="no reshape_transform"):
        FullGrad(net, reshape_transform=lambda t: t)
    with pytest.raises(LayerNotFoundError, match="no Conv2d with a bias"):
        FullGrad(nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.Flatten(), nn.LazyLinear(2)))


def test_smoothing(net, x8):
    cam = FullGrad(net)
    for kw in ({"aug_smooth": True}, {"eigen_smooth": True}):
        out = cam(x8, 1, **kw)
        assert out.shape == (3, 8, 8) and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_matches_pytorch_grad_cam():
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cats = [3, 8]
    ours = FullGrad(model)(x, targets=[ClassifierOutputTarget(c) for c in cats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.FullGrad(model, [])(x, [PeerTarget(c) for c in cats])
    for i in range(2):
        assert np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.slow
def test_inception_v3_auxiliary_head_is_skipped():
    """pytorch-grad-cam 1.5.7 asserts here: the auxiliary head's layers never run in eval mode."""
    import torchvision

    model = torchvision.models.inception_v3(num_classes=10, aux_logits=True, init_weights=False).eval()
    cam = FullGrad(model)
    assert any(n.startswith("AuxLogits") for n in cam.bias_layer_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cam(torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0)), 1)
    assert out.shape == (1, 160, 160) and np.isfinite(out).all() and out.max() == pytest.approx(1.0)
