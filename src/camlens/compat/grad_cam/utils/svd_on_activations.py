"""``pytorch_grad_cam.utils.svd_on_activations``: first principal component projections, numpy in
and out, computed with camlens's batched torch code (no scikit-learn).

Difference on purpose: the SVD's arbitrary sign is fixed so the projection correlates positively
with the channel sum (pytorch-grad-cam returns whichever sign LAPACK gives, so maps can come out
inverted).
"""

from __future__ import annotations

import numpy as np
import torch

from camlens import postprocess as pp

__all__ = ["get_2d_projection", "get_2d_projection_kernel", "get_2d_projection_with_sign_correction"]


def get_2d_projection(activation_batch: np.ndarray) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, h, w)`` float32: each image's positions projected on the first
    principal component of its centred ``(h*w, C)`` activations (NaN treated as 0)."""
    t = torch.as_tensor(np.nan_to_num(np.asarray(activation_batch, dtype=np.float32)))
    return pp.eigen_projection(t).numpy().astype(np.float32)


def get_2d_projection_kernel(activation_batch: np.ndarray, kernel: str = "sigmoid", gamma: float | None = None) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, h, w)``: each image's first *kernel* principal component (KPCA-CAM's
    projection, :func:`camlens.methods.kpcacam.kernel_pca_first_component`), sign fixed as above."""
    from camlens.methods.kpcacam import kernel_pca_first_component

    t = torch.as_tensor(np.nan_to_num(np.asarray(activation_batch, dtype=np.float32)))
    n, c, h, w = t.shape
    x = t.reshape(n, c, h * w).transpose(1, 2)
    x = x - x.mean(dim=1, keepdim=True)
    proj = kernel_pca_first_component(x, kernel, gamma)
    return pp.align_sign(proj, t.sum(dim=1)).reshape(n, h, w).numpy().astype(np.float32)


def get_2d_projection_with_sign_correction(activation_batch: np.ndarray) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, h, w)``: the first principal component with Seg-Eigen-CAM's sign rule
    (the larger-magnitude extreme is positive; Chung & Ying 2025, Eq. 13)."""
    t = torch.as_tensor(np.nan_to_num(np.asarray(activation_batch, dtype=np.float32)))
    proj = pp.eigen_projection(t)
    flat = proj.flatten(1)
    flip = flat.min(dim=1).values.abs() > flat.max(dim=1).values.abs()
    return torch.where(flip[:, None, None], -proj, proj).numpy().astype(np.float32)
