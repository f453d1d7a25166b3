"""Naive numpy references for the tiny fixed-weight net of conftest.TinyNet.

Everything here is written with explicit loops from the papers' formulas, independently of camlens.
"""

from __future__ import annotations

import numpy as np
import torch


def activations_and_gradients(model, x: torch.Tensor, classes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (N, C, h, w) of ``model.feat``, dy_c/dA (same shape), and the scores y_c, by hand."""
    w = model.feat.weight.detach().numpy()[:, :, 0, 0]  # (C, Cin)
    b = model.feat.bias.detach().numpy()
    hw = model.head.weight.detach().numpy()  # (K, C*h*w)
    hb = model.head.bias.detach().numpy()
    xs = x.numpy()
    n, cin, h, wd = xs.shape
    c = w.shape[0]
    acts = np.zeros((n, c, h, wd))
    for i in range(n):
        for k in range(c):
            for p in range(h):
                for q in range(wd):
                    acts[i, k, p, q] = sum(w[k, j] * xs[i, j, p, q] for j in range(cin)) + b[k]
    grads = np.zeros_like(acts)
    scores = np.zeros(n)
    for i in range(n):
        wc = hw[classes[i]].reshape(c, h, wd)
        grads[i] = 2 * wc * acts[i]
        scores[i] = (wc * acts[i] ** 2).sum() + hb[classes[i]]
    return acts, grads, scores


def finish(raw: np.ndarray) -> np.ndarray:
    """ReLU then per-image min-max normalisation (no upsampling: layer resolution == input)."""
    out = np.maximum(raw, 0)
    res = np.zeros_like(out)
    for i in range(out.shape[0]):
        lo, hi = out[i].min(), out[i].max()
        res[i] = (out[i] - lo) / (hi - lo) if hi > lo else 0.0
    return res


def first_pc_projection(weighted: np.ndarray) -> np.ndarray:
    """Per image: centre the (hw, C) samples, project on the first right-singular vector, sign so
    that the projection correlates positively with the channel sum."""
    n, c, h, w = weighted.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        m = weighted[i].reshape(c, h * w).T.astype(np.float64)
        m = m - m.mean(axis=0)
        _, _, vt = np.linalg.svd(m, full_matrices=True)
        proj = m @ vt[0]
        ref = weighted[i].sum(axis=0).reshape(-1)
        ref = ref - ref.mean()
        if (proj * ref).sum() < 0:
            proj = -proj
        out[i] = proj.reshape(h, w)
    return out
