"""Post-processing steps against naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camlens import postprocess as pp


def naive_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize (the cv2.resize / align_corners=False convention)."""
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y = max((i + 0.5) * h / out_h - 0.5, 0.0)
            x = max((j + 0.5) * w / out_w - 0.5, 0.0)
            y0, x0 = min(int(math.floor(y)), h - 1), min(int(math.floor(x)), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = (
                img[y0, x0] * (1 - dy) * (1 - dx)
                + img[y0, x1] * (1 - dy) * dx
                + img[y1, x0] * dy * (1 - dx)
                + img[y1, x1] * dy * dx
            )
    return out


def test_upsample_matches_half_pixel_bilinear():
    m = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(0))
    up = pp.upsample(m, (7, 12))
    for i in range(2):
        np.testing.assert_allclose(up[i].numpy(), naive_bilinear(m[i].numpy(), 7, 12), atol=1e-6)


def test_upsample_same_size_is_identity():
    m = torch.rand(1, 4, 4)
    assert pp.upsample(m, (4, 4)) is m


def test_minmax_normalize_per_image_and_constant_maps():
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, float("nan")], [1.0, 0.0]]])
    out = pp.minmax_normalize(m)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[2], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))


def test_relu_and_combine():
    a = torch.tensor([[[-1.0, 2.0]]])
    b = torch.tensor([[[3.0, 0.0]]])
    assert torch.equal(pp.relu(a), torch.tensor([[[0.0, 2.0]]]))
    assert torch.equal(pp.combine([a, b]), torch.tensor([[[1.0, 1.0]]]))
    assert torch.equal(pp.combine([a, b], "max"), torch.tensor([[[3.0, 2.0]]]))
    assert torch.equal(pp.combine([a, b], "sum"), torch.tensor([[[2.0, 2.0]]]))
    with pytest.raises(ValueError, match="mean"):
        pp.combine([a], "median")


def test_eigen_projection_sign_follows_the_channel_sum():
    # Rank-one activations: every channel is a positive multiple of one spatial pattern.
    pattern = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    acts = torch.stack([pattern * s for s in (1.0, 2.0, 0.5)])[None]
    for flip in (1.0, -1.0):  # whatever the SVD's sign, the map must match the pattern's ordering
        proj = pp.eigen_projection(acts * flip)
        corr = torch.corrcoef(torch.stack([proj.flatten(), (acts * flip).sum(1).flatten()]))[0, 1]
        assert corr > 0.999
    proj = pp.eigen_projection(acts)
    assert proj.argmax() == pattern.argmax()


def test_eigen_projection_is_batched_and_exact():
    x = torch.randn(3, 6, 4, 5, generator=torch.Generator().manual_seed(3))
    batched = pp.eigen_projection(x)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], pp.eigen_projection(x[i : i + 1]))
        m = x[i].reshape(6, -1).T.double()
        m = m - m.mean(0)
        _, _, vt = torch.linalg.svd(m)
        ref = m @ vt[0]
        ref = ref * torch.sign((ref * (x[i].sum(0).flatten() - x[i].sum(0).mean()).double()).sum())
        torch.testing.assert_close(batched[i].flatten().double(), ref, rtol=1e-4, atol=1e-5)
