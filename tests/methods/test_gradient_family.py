"""Hand-computed values for every gradient-based method on the tiny fixed-weight net (to 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from camlens.targets import ClassifierOutputTarget

from .reference import activations_and_gradients, finish, first_pc_projection

CLASSES = [0, 3, 4]


def _run(cls, tiny, tiny_input, **kw):
    cam = cls(model=tiny, target_layers=[tiny.feat])
    exp = cam.explain(tiny_input, [ClassifierOutputTarget(c) for c in CLASSES], **kw)
    return exp


def _reference(tiny, tiny_input):
    return activations_and_gradients(tiny, tiny_input, CLASSES)


def _check(exp, raw_ref, scores_ref):
    np.testing.assert_allclose(exp.scores.numpy(), scores_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw_ref), atol=1e-5)


def test_gradcam_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    n, c, h, w = a.shape
    raw = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            weight = sum(g[i, k, p, q] for p in range(h) for q in range(w)) / (h * w)
            raw[i] += weight * a[i, k]
    _check(_run(GradCAM, tiny, tiny_input), raw, s)


def test_gradcam_plus_plus_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    n, c, h, w = a.shape
    raw = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            a_sum = a[i, k].sum()
            weight = 0.0
            for p in range(h):
                for q in range(w):
                    gg = g[i, k, p, q]
                    denom = 2 * gg**2 + a_sum * gg**3
                    alpha = gg**2 / denom if denom != 0 else 0.0
                    weight += alpha * max(gg, 0.0)
            raw[i] += weight * a[i, k]
    _check(_run(GradCAMPlusPlus, tiny, tiny_input), raw, s)


def test_xgradcam_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    n, c, h, w = a.shape
    raw = np.zeros((n, h, w))
    for i in range(n):
        for k in range(c):
            total = a[i, k].sum()
            weight = sum(a[i, k, p, q] / total * g[i, k, p, q] for p in range(h) for q in range(w))
            raw[i] += weight * a[i, k]
    _check(_run(XGradCAM, tiny, tiny_input), raw, s)


def test_hirescam_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    _check(_run(HiResCAM, tiny, tiny_input), (g * a).sum(axis=1), s)


def test_gradcam_elementwise_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    _check(_run(GradCAMElementWise, tiny, tiny_input), np.maximum(g * a, 0).sum(axis=1), s)


def test_layercam_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    _check(_run(LayerCAM, tiny, tiny_input), (np.maximum(g, 0) * a).sum(axis=1), s)


def test_eigencam_by_hand(tiny, tiny_input):
    a, _, s = _reference(tiny, tiny_input)
    _check(_run(EigenCAM, tiny, tiny_input), first_pc_projection(a), s)


def test_eigengradcam_by_hand(tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    _check(_run(EigenGradCAM, tiny, tiny_input), first_pc_projection(g * a), s)


@pytest.mark.parametrize("cls", [GradCAM, LayerCAM, HiResCAM])
def test_eigen_smooth_projects_weighted_activations(cls, tiny, tiny_input):
    a, g, s = _reference(tiny, tiny_input)
    if cls is GradCAM:
        weights = g.mean(axis=(2, 3), keepdims=True)
    elif cls is LayerCAM:
        weights = np.maximum(g, 0)
    else:
        weights = g
    _check(_run(cls, tiny, tiny_input, eigen_smooth=True), first_pc_projection(weights * a), s)


def test_xgradcam_zero_activation_channel_has_zero_weight():
    from camlens.methods.xgradcam import XGradCAM as X

    a = torch.zeros(1, 2, 2, 2)
    a[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    g = torch.ones_like(a)

    class Ctx:
        activations = a
        gradients = g

    w = X.cam_weights(None, Ctx())  # type: ignore[arg-type]
    assert torch.isfinite(w).all()
    assert w[0, 0].item() == 0.0
    assert w[0, 1].item() == pytest.approx(1.0)


def test_gradcampp_zero_gradient_is_not_nan():
    a = torch.rand(1, 2, 3, 3)
    g = torch.zeros_like(a)

    class Ctx:
        activations = a
        gradients = g

    w = GradCAMPlusPlus.cam_weights(None, Ctx())  # type: ignore[arg-type]
    assert torch.equal(w, torch.zeros(1, 2, 1, 1))
