"""Finer-CAM (Zhang et al. 2025) and FinerWeightedTarget: hand-computed scores, gradients and maps; peer parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from camlens import EigenCAM, FinerCAM, GradCAM, LayerCAM
from camlens.errors import InputTypeError, TargetError, TargetIndexError
from camlens.targets import ClassifierOutputTarget, FinerWeightedTarget, RawScoresOutputTarget

from .reference import activations_and_gradients, finish

CLASSES = [0, 3, 4]


def test_weighted_target_by_hand():
    out = torch.tensor([2.0, 1.5, -1.0, 0.5])
    t = FinerWeightedTarget(1, [0, 3], alpha=0.6)
    p = np.exp(out.numpy()) / np.exp(out.numpy()).sum()
    y = out.numpy()
    expected = (p[0] * (y[1] - 0.6 * y[0]) + p[3] * (y[1] - 0.6 * y[3])) / (p[0] + p[3])
    assert float(t(out)) == pytest.approx(expected, rel=1e-6)


def test_similar_classes_are_chosen_by_logit_distance():
    out = torch.tensor([5.0, 4.9, 1.0, 4.0, -3.0])
    assert FinerWeightedTarget(0).choose(out) == (0, [1, 3, 2])  # distances 0.1, 1.0, 4.0, 8.0
    assert FinerWeightedTarget(None, ranks=(2, 4)).choose(out) == (0, [3, 4])  # None: the top class
    assert FinerWeightedTarget(2, ranks=(1, 9)).choose(out) == (2, [3])  # rank 9 > 4 other classes: dropped
    assert repr(FinerWeightedTarget(0).resolve(out)) == "FinerWeightedTarget(0, [1, 3, 2], alpha=1.0)"


def test_weighted_target_errors():
    with pytest.raises(TargetError, match="no other class"):
        FinerWeightedTarget(0)(torch.tensor([1.0]))
    with pytest.raises(TargetIndexError, match="out of range"):
        FinerWeightedTarget(0, [7])(torch.zeros(5))
    with pytest.raises(TargetError, match="similarity ranks"):
        FinerWeightedTarget(0, ranks=(0,))
    with pytest.raises(TargetError, match="at least one comparison class"):
        FinerWeightedTarget(0, [])
    with pytest.raises(TargetError, match="num_classes"):
        FinerWeightedTarget(0)(torch.zeros(2, 3, 3))


def _finer_reference(tiny, x, classes, alpha, ranks=(1, 2, 3)):
    """Grad-CAM of s = sum_j w_j (y_c - alpha y_j), w = softmax over the compared logits, by hand:
    ds/dA = sum_j w_j (g_c - alpha g_j) + sum_j w_j (g_j - gbar) (y_c - alpha y_j), gbar = sum_j w_j g_j."""
    n = x.shape[0]
    k = tiny.head.weight.shape[0]
    per_class = [activations_and_gradients(tiny, x, [j] * n) for j in range(k)]
    a = per_class[0][0]
    raw = np.zeros((n, *a.shape[2:]))
    scores = np.zeros(n)
    for i in range(n):
        y = np.array([per_class[j][2][i] for j in range(k)])
        g = [per_class[j][1][i] for j in range(k)]
        c = classes[i]
        dist = np.abs(y - y[c])
        dist[c] = np.inf
        comps = [int(j) for j in np.argsort(dist, kind="stable")[[r - 1 for r in ranks]]]
        w = np.exp(y[comps] - y[comps].max())
        w /= w.sum()
        gbar = sum(wj * g[j] for wj, j in zip(w, comps))
        grad = sum(wj * (g[c] - alpha * g[j]) + wj * (g[j] - gbar) * (y[c] - alpha * y[j]) for wj, j in zip(w, comps))
        scores[i] = sum(wj * (y[c] - alpha * y[j]) for wj, j in zip(w, comps))
        weights = grad.mean(axis=(1, 2))
        raw[i] = (weights[:, None, None] * a[i]).sum(axis=0)
    return raw, scores


@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_finercam_by_hand(tiny, tiny_input, alpha):
    exp = FinerCAM(tiny, [tiny.feat], alpha=alpha).explain(tiny_input, [ClassifierOutputTarget(c) for c in CLASSES])
    raw, scores = _finer_reference(tiny, tiny_input, CLASSES, alpha)
    np.testing.assert_allclose(exp.scores.numpy(), scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.cam.numpy(), finish(raw), atol=1e-4)
    assert exp.cam.dtype == torch.float32 and exp.cam.device == tiny_input.device


def test_comparison_ranks_and_top_class(tiny, tiny_input):
    with torch.no_grad():
        top = tiny(tiny_input).argmax(dim=1).tolist()
    exp = FinerCAM(tiny, [tiny.feat], comparison_categories=(2, 4)).explain(tiny_input)
    raw, _ = _finer_reference(tiny, tiny_input, top, 1.0, ranks=(2, 4))
    np.testing.assert_allclose(exp.layer_maps[0].numpy(), raw, rtol=1e-4, atol=1e-4)


def test_alpha_zero_is_the_base_method(small_cnn, image_batch):
    ours = FinerCAM(small_cnn, [small_cnn.block], alpha=0.0)(image_batch, np.int64(2))
    np.testing.assert_allclose(ours, GradCAM(small_cnn, [small_cnn.block])(image_batch, 2), atol=1e-5)


def test_wraps_any_gradient_method(small_cnn, image_batch):
    targets = [FinerWeightedTarget(c, [(c + 1) % 6, (c + 2) % 6], 0.5) for c in (0, 1, 2, 5)]
    ours = FinerCAM(small_cnn, [small_cnn.block], base_method=LayerCAM)(image_batch, targets=targets)
    np.testing.assert_allclose(ours, LayerCAM(small_cnn, [small_cnn.block])(image_batch, targets=targets), atol=1e-6)


def test_aug_smooth_compares_with_the_unaugmented_image_classes(small_cnn, image_batch):
    cam = FinerCAM(small_cnn, [small_cnn.block])
    with torch.no_grad():
        outputs = small_cnn(image_batch)
    resolved = [FinerWeightedTarget(c).resolve(o) for c, o in zip((0, 1, 2, 5), outputs)]
    ours = cam(image_batch, [0, 1, 2, 5], aug_smooth=True)
    expected = GradCAM(small_cnn, [small_cnn.block])(image_batch, targets=resolved, aug_smooth=True)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_errors(small_cnn, image_batch):
    cam = FinerCAM(small_cnn, [small_cnn.block])
    with pytest.raises(TargetError, match="ClassifierOutputTarget\\(class\\) or a FinerWeightedTarget; got RawScores"):
        cam(image_batch, targets=[RawScoresOutputTarget()] * 4)
    with pytest.raises(TargetError, match="got 2 targets for a batch of 4"):
        cam(image_batch, targets=[ClassifierOutputTarget(1)] * 2)
    with pytest.raises(TargetError, match="has 3 entries but the batch has 4"):
        cam(image_batch, [1, 2, 3])
    with pytest.raises(InputTypeError, match="needs a gradient method"):
        FinerCAM(small_cnn, [small_cnn.block], base_method=EigenCAM)
    with pytest.raises(InputTypeError, match="camlens CAM class"):
        FinerCAM(small_cnn, [small_cnn.block], base_method=len)
    with pytest.raises(TargetError, match="alpha"):
        FinerCAM(small_cnn, [small_cnn.block], alpha="strong")


def test_matches_pytorch_grad_cam():
    peer = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) is not installed")
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = FinerCAM(model, "layer4", alpha=0.6)(x, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.FinerCAM(model, [model.layer4])(x, None, alpha=0.6, target_idx=4)
    for i in range(3):
        if theirs[i].max() > 0:
            assert np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
