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

__all__ = ["get_2d_projection"]


def get_2d_projection(activation_batch: np.ndarray) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, h, w)`` float32: each image's positions projected on the first
    principal component of its centred ``(h*w, C)`` activations (NaN treated as 0)."""
    t = torch.as_tensor(np.nan_to_num(np.asarray(activation_batch, dtype=np.float32)))
    return pp.eigen_projection(t).numpy().astype(np.float32)
