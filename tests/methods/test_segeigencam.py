"""SegEigenCAM: naive-loop reference (|g| * A, SVD, Eq. 13 sign), and agreement with pytorch-grad-cam."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from camlens import SegEigenCAM
from camlens.targets import ClassifierOutputTarget

from .reference import activations_and_gradients, finish

CLASSES = [0, 3, 4]


def naive_seg_eigen(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        weighted = np.zeros((h * w, c))
        for k in range(c):
            for p in range(h):
                for q in range(w):
                    weighted[p * w + q, k] = abs(g[i, k, p, q]) * a[i, k, p, q]
        weighted -= weighted.mean(axis=0)
        _, _, vt = np.linalg.svd(weighted)
        proj = weighted @ vt[0]
        if abs(proj.min()) > abs(proj.max()):
            proj = -proj
        out[i] = proj.reshape(h, w)
    return out


def test_seg_eigen_naive_loop(tiny, tiny_input):
    a, g, s = activations_and_gradients(tiny, tiny_input, CLASSES)
    raw = naive_seg_eigen(a, g)
    exp = SegEigenCAM(tiny, [tiny.feat]).explain(tiny_input, [ClassifierOutputTarget(c) for c in CLASSES])
    np.testing.assert_allclose(exp.scores.numpy(), s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-5)


def test_sign_rule_larger_extreme_is_positive(small_cnn, image_batch):
    maps = SegEigenCAM(small_cnn, "block").explain(image_batch, target_category=1).layer_maps[0].flatten(1)
    assert bool((maps.max(dim=1).values >= maps.min(dim=1).values.abs()).all())


def test_matches_peer():
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget

    from ._peer_setup import correlations, resnet_and_batch

    model, x = resnet_and_batch()
    layer, cats = model.layer4[-1], [3, 7, 11]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.SegEigenCAM(model=model, target_layers=[layer])(input_tensor=x, targets=[PeerTarget(c) for c in cats])
    ours = SegEigenCAM(model, [layer])(x, targets=[ClassifierOutputTarget(c) for c in cats])
    assert min(correlations(ours, theirs)) >= 0.99
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert torch.is_grad_enabled()


def test_on_vit_tokens_with_reshape_transform():
    from ._vit import check_on_vit_tokens

    check_on_vit_tokens(SegEigenCAM)
