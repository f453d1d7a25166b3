"""ShapleyCAM (Cai 2025) and the ReST target: hand-computed gradient and Hessian-vector product on the tiny net."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import GradCAM, ShapleyCAM
from camlens.targets import ClassifierOutputReST, ClassifierOutputTarget

from testnets import SquareHead

from .reference import activations_and_gradients, finish

CLASSES = [0, 3, 4]


def rest_reference(tiny, x, classes):
    """ReST score s = 2 y_c - logsumexp(y) on TinyNet (y_k = sum W_k A^2 + b_k), its gradient and H A, by hand.

    g_k = 2 W_k A;  ds/dA = 2 g_c - sum_k p_k g_k;
    H A = 2 (2 W_c A) - sum_k p_k (2 W_k A) - sum_k p_k (g_k - gbar) <g_k, A>,  gbar = sum_k p_k g_k.
    """
    a, _, _ = activations_and_gradients(tiny, x, classes)
    n, c, h, w = a.shape
    wk = tiny.head.weight.detach().numpy().reshape(-1, c, h, w)  # (K, C, h, w)
    b = tiny.head.bias.detach().numpy()
    k = wk.shape[0]
    grads, hvps, scores = np.zeros_like(a), np.zeros_like(a), np.zeros(n)
    for i in range(n):
        y = np.array([(wk[j] * a[i] ** 2).sum() + b[j] for j in range(k)])
        p = np.exp(y - y.max())
        p /= p.sum()
        g = [2 * wk[j] * a[i] for j in range(k)]
        gbar = sum(p[j] * g[j] for j in range(k))
        cls = classes[i]
        scores[i] = 2 * y[cls] - (y.max() + np.log(np.exp(y - y.max()).sum()))
        grads[i] = 2 * g[cls] - gbar
        hv = 2 * (2 * wk[cls] * a[i]) - sum(p[j] * 2 * wk[j] * a[i] for j in range(k))
        hv -= sum(p[j] * (g[j] - gbar) * (g[j] * a[i]).sum() for j in range(k))
        hvps[i] = hv
    return a, grads, hvps, scores


def test_shapleycam_with_rest_by_hand(tiny, tiny_input):
    a, g, hv, s = rest_reference(tiny, tiny_input, CLASSES)
    n, c, h, w = a.shape
    raw = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            weight = sum(g[i, k, p, q] - 0.5 * hv[i, k, p, q] for p in range(h) for q in range(w)) / (h * w)
            raw[i] += weight * a[i, k]
    exp = ShapleyCAM(tiny, [tiny.feat]).explain(tiny_input, [ClassifierOutputReST(c) for c in CLASSES])
    np.testing.assert_allclose(exp.scores.numpy(), s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-4)
    # The second-order term matters here: Grad-CAM of the same score gives another map.
    grad_raw = GradCAM(tiny, [tiny.feat]).explain(tiny_input, [ClassifierOutputReST(c) for c in CLASSES]).layer_maps[0]
    assert not np.allclose(grad_raw.numpy(), raw, atol=1e-3)


def test_shapleycam_with_logit_target_by_hand(tiny, tiny_input):
    # y = sum W A^2 + b: g = 2 W A and H A = 2 W A, so g - H A / 2 = W A.
    a, g, s = activations_and_gradients(tiny, tiny_input, CLASSES)
    raw = ((g / 2).mean(axis=(2, 3), keepdims=True) * a).sum(axis=1)
    exp = ShapleyCAM(tiny, [tiny.feat]).explain(tiny_input, [ClassifierOutputTarget(c) for c in CLASSES])
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.scores.numpy(), s, rtol=1e-5)


def test_rest_target_by_hand():
    out = torch.tensor([[1.0, 2.0, -0.5], [0.3, 0.1, 4.0]])
    t = ClassifierOutputReST(1)
    expected = out[:, 1] + torch.log_softmax(out, dim=1)[:, 1]
    torch.testing.assert_close(ClassifierOutputReST.score_batch([t, t], out), expected)
    lse = np.log(np.exp([1.0, 2.0, -0.5]).sum())
    assert float(t(out[0])) == pytest.approx(2 * 2.0 - lse, rel=1e-6)


def test_linear_tail_gives_gradcam(small_cnn, image_batch):
    # After `block` the net is ReLU -> mean -> linear: piecewise linear, so H A = 0.
    targets = [ClassifierOutputTarget(c) for c in (0, 1, 2, 5)]
    ours = ShapleyCAM(small_cnn, [small_cnn.block]).explain(image_batch, targets)
    grad = GradCAM(small_cnn, [small_cnn.block]).explain(image_batch, targets)
    torch.testing.assert_close(ours.layer_maps[0], grad.layer_maps[0])


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.feat1 = nn.Conv2d(2, 3, 1)
        self.feat2 = nn.Conv2d(3, 3, 1)
        self.head = SquareHead(3 * 4 * 4, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.head(torch.tanh(self.feat2(torch.tanh(self.feat1(x)))))


def test_each_layer_gets_its_own_hessian_block(tiny_input):
    net = TwoLayers().eval()
    targets = [ClassifierOutputReST(c) for c in CLASSES]
    both = ShapleyCAM(net, ["feat1", "feat2"]).explain(tiny_input, targets)
    for i, name in enumerate(["feat1", "feat2"]):
        alone = ShapleyCAM(net, [name]).explain(tiny_input, targets)
        torch.testing.assert_close(both.layer_maps[i], alone.layer_maps[0], rtol=1e-5, atol=1e-6)


def test_matches_pytorch_grad_cam():
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST as PeerReST
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cats = [3, 5, 8]
    ours = ShapleyCAM(model, "layer3")(x, targets=[ClassifierOutputReST(c) for c in cats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.ShapleyCAM(model, [model.layer3])(x, [PeerReST(c) for c in cats])
    for i in range(3):
        if theirs[i].max() > 0:
            assert np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


class AttentionNet(nn.Module):
    """Patch tokens -> one self-attention (scaled_dot_product_attention) -> ``norm`` -> mean-pool head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(2, 8, 2, stride=2)
        self.qkv = nn.Linear(8, 24)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (N, 4, 8)
        t = self.norm(t)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        t = t + torch.nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.head(t.mean(dim=1))


def test_double_backward_through_fused_attention(tiny_input):
    """Fused attention kernels have no second derivative; the engine runs the math kernel for H A."""
    from camlens.reshape import TokenReshape

    net = AttentionNet().eval()
    cam = ShapleyCAM(net, "norm", reshape_transform=TokenReshape(num_prefix_tokens=0, grid=(2, 2)))
    exp = cam.explain(tiny_input, [ClassifierOutputReST(c) for c in CLASSES])
    assert exp.cam.shape == (3, 4, 4) and torch.isfinite(exp.cam).all()
    grad = GradCAM(net, "norm", reshape_transform=TokenReshape(num_prefix_tokens=0, grid=(2, 2)))
    assert not torch.allclose(exp.layer_maps[0], grad.explain(tiny_input, [ClassifierOutputReST(c) for c in CLASSES]).layer_maps[0])
