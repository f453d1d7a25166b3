"""KPCA-CAM: naive-loop kernel PCA reference for every kernel, scikit-learn and peer agreement, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from camlens import EigenCAM, KPCACAM
from camlens import postprocess as pp
from camlens.errors import CamLensError, InputTypeError

from .reference import activations_and_gradients, finish

KERNELS = ["sigmoid", "rbf", "poly", "cosine", "linear"]


def kernel(kind: str, x: list[float], y: list[float], gamma: float) -> float:
    dot = sum(a * b for a, b in zip(x, y))
    if kind == "sigmoid":
        return math.tanh(gamma * dot + 1.0)
    if kind == "rbf":
        return math.exp(-gamma * sum((a - b) ** 2 for a, b in zip(x, y)))
    if kind == "poly":
        return (gamma * dot + 1.0) ** 3
    if kind == "cosine":
        nx, ny = math.sqrt(sum(a * a for a in x)), math.sqrt(sum(b * b for b in y))
        return dot / (nx * ny) if nx * ny > 0 else 0.0
    return dot


def naive_kpca(acts: np.ndarray, kind: str, gamma: float | None) -> np.ndarray:
    """Per image: centre samples, Gram matrix by loops, centre it, top eigenpair, sqrt(l) * alpha,
    sign so that the map correlates positively with the channel sum."""
    n, c, h, w = acts.shape
    g = 1.0 / c if gamma is None else gamma
    out = np.zeros((n, h, w))
    for i in range(n):
        samples = acts[i].reshape(c, h * w).T
        samples = samples - samples.mean(axis=0)
        p = h * w
        k = np.array([[kernel(kind, list(samples[a]), list(samples[b]), g) for b in range(p)] for a in range(p)])
        row = k.mean(axis=0)
        kc = np.array([[k[a, b] - row[a] - row[b] + k.mean() for b in range(p)] for a in range(p)])
        vals, vecs = np.linalg.eigh(kc)
        proj = vecs[:, -1] * math.sqrt(max(vals[-1], 0.0))
        ref = acts[i].sum(axis=0).reshape(-1)
        if ((proj - proj.mean()) * (ref - ref.mean())).sum() < 0:
            proj = -proj
        out[i] = proj.reshape(h, w)
    return out


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("gamma", [None, 0.3])
def test_kpca_naive_loop(tiny, tiny_input, kind, gamma):
    a, _, _ = activations_and_gradients(tiny, tiny_input, [0, 0, 0])
    raw = naive_kpca(a, kind, gamma)
    exp = KPCACAM(tiny, [tiny.feat], kernel=kind, gamma=gamma).explain(tiny_input, target_category=0)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-4)


def test_linear_kernel_is_eigencam(small_cnn, image_batch):
    ours = KPCACAM(small_cnn, "block", kernel="linear").explain(image_batch).layer_maps[0]
    eigen = EigenCAM(small_cnn, "block").explain(image_batch).layer_maps[0]
    torch.testing.assert_close(ours, eigen, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KERNELS)
def test_matches_sklearn_kernel_pca_up_to_sign(small_cnn, image_batch, kind):
    decomposition = pytest.importorskip("sklearn.decomposition", reason="scikit-learn is not installed")
    from camlens.engine import Engine

    acts = Engine(small_cnn, [("block", small_cnn.block)]).run(image_batch, need_gradients=False).activations[0]
    ours = KPCACAM(small_cnn, "block", kernel=kind).explain(image_batch).layer_maps[0]
    for i in range(4):
        x = acts[i].reshape(16, -1).T.double().numpy()
        x = x - x.mean(axis=0)
        ref = decomposition.KernelPCA(n_components=1, kernel=kind).fit_transform(x)[:, 0]
        mine = ours[i].reshape(-1).double().numpy()
        assert min(np.abs(mine - ref).max(), np.abs(mine + ref).max()) < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("kind", ["sigmoid", "rbf"])
def test_matches_peer_up_to_sign(kind):
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from ._peer_setup import correlations, resnet_and_batch

    model, x = resnet_and_batch()
    layer = model.layer4[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.KPCA_CAM(model=model, target_layers=[layer], kernel=kind)(input_tensor=x, targets=None)
    exp = KPCACAM(model, [layer], kernel=kind).explain(x)
    flipped = pp.minmax_normalize(pp.upsample(pp.relu(-exp.layer_maps[0]), (96, 96))).numpy()
    best = np.maximum(correlations(exp.numpy(), theirs), correlations(flipped, theirs))
    assert best.min() >= 0.99, best


def test_kpca_is_class_agnostic(small_cnn, image_batch):
    cam = KPCACAM(small_cnn, "block", kernel="rbf")
    np.testing.assert_array_equal(cam(image_batch, 0), cam(image_batch, 4))


def test_kpca_errors(small_cnn):
    with pytest.raises(CamLensError, match="kernel must be one of sigmoid, rbf"):
        KPCACAM(small_cnn, "block", kernel="laplacian")
    with pytest.raises(InputTypeError, match="gamma must be a positive number"):
        KPCACAM(small_cnn, "block", gamma=-1.0)


def test_kpca_warns_when_the_kernel_is_constant(small_cnn, image_batch):
    cam = KPCACAM(small_cnn, "block", kernel="sigmoid", gamma=1e-30)  # tanh(1e-30 <x, y> + 1): constant
    with pytest.warns(UserWarning, match="kernel matrix of layer 'block' is zero"):
        exp = cam.explain(image_batch)
    assert float(exp.layer_maps[0].abs().max()) == 0.0


def test_on_vit_tokens_with_reshape_transform():
    from ._vit import check_on_vit_tokens

    check_on_vit_tokens(KPCACAM, kernel="rbf")
