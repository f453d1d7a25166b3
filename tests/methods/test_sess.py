"""SESS: a naive loop over windows (one base-CAM call per window, full canvases, per-pixel fusion,
a looped Gaussian) on a small net, geometry, errors, and pytorch-grad-cam 1.5.7's SESS."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlens import SESS, GradCAM, LayerCAM
from camlens.errors import ArgumentError, InputTypeError
from camlens.methods.sess import gaussian_blur, window_starts
from camlens.targets import ClassifierOutputTarget


def _naive_blur(m: np.ndarray, k: int = 11, sigma: float = 5.0) -> np.ndarray:
    r = k // 2
    g = np.exp(-((np.arange(k) - r) ** 2) / (2 * sigma**2))
    g /= g.sum()
    h, w = m.shape

    def reflect(i: int, n: int) -> int:  # OpenCV's BORDER_REFLECT_101: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    out = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            out[y, x] = sum(g[a] * g[b] * m[reflect(y + a - r, h), reflect(x + b - r, w)] for a in range(k) for b in range(k))
    return out


def _naive_sess(model, layer, x, classes, scales, window, step, ratio, theta, pool):
    n, _, height, width = x.shape
    base = GradCAM(model, [layer])
    out = np.zeros((n, height, width))
    for i in range(n):
        target = ClassifierOutputTarget(classes[i])
        patches = []
        for s in scales:
            h, w = (s, int(s * width / height)) if height <= width else (int(s * height / width), s)
            scaled = F.interpolate(x[i : i + 1], size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            ys = [p for p in range(0, h, step) if p + window < h] + [max(h - window, 0)]
            xs = [p for p in range(0, w, step) if p + window < w] + [max(w - window, 0)]
            for y0 in ys:
                for x0 in xs:
                    patch = scaled[..., y0 : y0 + window, x0 : x0 + window]
                    with torch.no_grad():
                        prob = torch.softmax(model(patch), dim=1)[0, classes[i]].item()
                    patches.append((patch, (h, w, y0, x0), max(prob, 0.0)))
        scores = [p[2] for p in patches]
        drop = int(len(patches) * ratio)
        order = sorted(range(len(patches)), key=lambda j: -scores[j])[: len(patches) - drop]
        top = max(scores)
        total, count = np.zeros((height, width)), np.zeros((height, width))
        for j in sorted(order):
            patch, (h, w, y0, x0), sc = patches[j]
            cam = base(patch, targets=[target])[0] * (sc / top)
            canvas = torch.zeros(1, 1, h, w)
            canvas[0, 0, y0 : y0 + window, x0 : x0 + window] = torch.from_numpy(cam)
            full = F.interpolate(canvas, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
            for y in range(height):
                for q in range(width):
                    if pool == "max":
                        total[y, q] = max(total[y, q], full[y, q])
                    elif full[y, q] > theta:
                        total[y, q] += full[y, q]
                        count[y, q] += 1
        fused = total if pool == "max" else np.where(count > 0, total / np.maximum(count, 1), 0.0)
        fused = _naive_blur(fused)
        out[i] = (fused - fused.min()) / (fused.max() - fused.min())
    return out


@pytest.mark.parametrize(("ratio", "theta", "pool"), [(0.0, 0.0, "mean"), (0.3, 0.1, "mean"), (0.5, 0.0, "max")])
def test_by_naive_loop(small_cnn, ratio, theta, pool):
    x = torch.randn(2, 3, 12, 14, generator=torch.Generator().manual_seed(3))
    classes = [1, 4]
    kw = {"scales": [8, 11, 16], "window_size": 8, "step_size": 5, "pre_filter_ratio": ratio, "theta": theta, "pool": pool}
    got = SESS(small_cnn, [small_cnn.block], batch_size=7, progress=False, **kw)(
        x, targets=[ClassifierOutputTarget(c) for c in classes]
    )
    ref = _naive_sess(small_cnn, small_cnn.block, x, classes, kw["scales"], 8, 5, ratio, theta, pool)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_window_geometry():
    assert window_starts(16, 16, 16) == [0]
    assert window_starts(21, 16, 16) == [0, 5]
    assert window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert window_starts(41, 16, 8) == [0, 8, 16, 24, 25]
    sess = SESS(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), "0")
    window, sizes, wins = sess.windows(224, 300)
    assert window == 224
    assert [h for h, _ in sizes] == [224 + 64 * i for i in range(12)]  # the paper's scales
    assert sizes[0] == (224, 300) and sizes[1] == (288, int(288 * 300 / 224))
    assert len(wins) == sum(len(window_starts(h, 224, 224)) * len(window_starts(w, 224, 224)) for h, w in sizes)


def test_gaussian_blur_matches_a_naive_loop():
    m = torch.rand(1, 13, 17, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(gaussian_blur(m)[0].numpy(), _naive_blur(m[0].double().numpy()), atol=1e-6)


def test_other_base_methods_and_their_options(small_cnn, image_batch):
    sess = SESS(small_cnn, [small_cnn.block], base_method=LayerCAM, num_scales=2, progress=False)
    assert isinstance(sess.base, LayerCAM)
    out = sess(image_batch, 1)
    assert out.shape == (4, 16, 16) and np.isfinite(out).all()
    noisy = SESS(small_cnn, [small_cnn.block], base_method="smoothgradcam++", base_options={"num_samples": 2}, num_scales=1)
    assert noisy.base.num_samples == 2


def test_batch_size_bounds_the_window_batches(small_cnn, image_batch):
    sizes: list[int] = []
    handle = small_cnn.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        sess = SESS(small_cnn, [small_cnn.block], num_scales=3, batch_size=5, progress=False)
        sess(image_batch, 0)
    finally:
        handle.remove()
    n_windows = len(sess.windows(16, 16)[2])
    assert sizes[0] == 4 and max(sizes[1:]) <= 5
    assert sum(sizes[1:]) == 2 * 4 * n_windows  # scores, then the base CAM of every kept window


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pool": "median"}, ArgumentError, r"pool must be 'mean' or 'max'; got 'median'"),
        ({"pre_filter_ratio": 1.0}, ArgumentError, r"pre_filter_ratio must be in \[0, 1\)"),
        ({"num_scales": 0}, ArgumentError, r"num_scales must be a positive int; got 0"),
        ({"scales": []}, ArgumentError, r"scales must be a non-empty list"),
        ({"base_method": "sess"}, ArgumentError, r"base_method cannot be SESS itself"),
        ({"base_method": int}, InputTypeError, r"base_method must be a registered method name or a CAM class"),
    ],
)
def test_errors(small_cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        SESS(small_cnn, [small_cnn.block], **kwargs)


def test_scale_below_the_window_is_an_error(small_cnn, image_batch):
    with pytest.raises(ArgumentError, match=r"every scale must be at least the window size 16; got \[12\]"):
        SESS(small_cnn, [small_cnn.block], scales=[12, 20])(image_batch, 0)


@pytest.mark.slow
def test_agrees_with_pytorch_grad_cam():
    """pytorch-grad-cam 1.5.7's SESS with GradCAM as base, on resnet18 (no in-place op right after
    the target layer: the peer's CPU capture would see it)."""
    peer = pytest.importorskip("pytorch_grad_cam.sess")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as PeerTarget

    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=20).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cats = [3, 7]
    kw = {"num_scales": 3, "pre_filter_ratio": 0.25}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peer.SESS(model, [model.layer4[-1]], **kw)(x, [PeerTarget(c) for c in cats])
    ours = SESS(model, [model.layer4[-1]], progress=False, **kw)(x, targets=[ClassifierOutputTarget(c) for c in cats])
    for i in range(2):
        r = np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1]
        assert r >= 0.95 and not math.isnan(r), r


def test_explain_returns_the_fused_map_and_the_images_scores(small_cnn, image_batch):
    """What the contract's layer-resolution checks cover for other methods (SESS skips them there)."""
    exp = SESS(small_cnn, ["stem", "block"], num_scales=2, progress=False).explain(image_batch, [ClassifierOutputTarget(1)] * 4)
    assert exp.cam.dtype == torch.float32 and exp.cam.shape == (4, 16, 16)
    assert [m.shape for m in exp.layer_maps] == [(4, 16, 16)]
    torch.testing.assert_close(exp.layer_maps[0].flatten(1).argmax(1), exp.cam.flatten(1).argmax(1))
    with torch.no_grad():
        torch.testing.assert_close(exp.scores, small_cnn(image_batch)[:, 1])


def test_window_larger_than_the_input_upscales_first(small_cnn, image_batch):
    sess = SESS(small_cnn, [small_cnn.block], window_size=24, num_scales=2, progress=False)
    window, sizes, wins = sess.windows(16, 16)
    assert window == 24 and sizes == [(24, 24), (31, 31)] and len(wins) == 1 + 4
    assert sess(image_batch, 0).shape == (4, 16, 16)
