"""Pure, batched post-processing of CAMs. Every function takes and returns tensors.

The pipeline a CAM method's raw map goes through, in this order:

1. :func:`relu` -- keep positive evidence (optional per method; on by default);
2. :func:`upsample` -- bilinear, ``align_corners=False`` (the half-pixel convention of
   ``cv2.resize``), from layer resolution ``(h, w)`` to the input's ``(H, W)``;
3. :func:`minmax_normalize` -- per image, ``(x - min) / (max - min)``; a constant map becomes zeros;
4. with several target layers, :func:`combine` (mean by default) and normalise again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from .errors import ArgumentError

__all__ = ["relu", "upsample", "minmax_normalize", "combine", "eigen_projection", "align_sign"]


def relu(maps: torch.Tensor) -> torch.Tensor:
    """Element-wise ``max(x, 0)``."""
    return maps.clamp_min(0)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, h, w)`` maps to ``size = (H, W)`` with bilinear interpolation (half-pixel centres)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    dtype = maps.dtype
    out = F.interpolate(maps.float()[:, None], size=tuple(size), mode="bilinear", align_corners=False)
    return out[:, 0].to(dtype)


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of ``(N, ...)`` to ``[0, 1]``: ``(x - min) / (max - min)``; constant maps -> 0.

    Non-finite values (which a degenerate model can produce) are replaced by 0 first.
    """
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (flat - lo) / safe, torch.zeros_like(flat))
    return out.clamp_(0.0, 1.0).reshape(maps.shape)


def combine(maps: Sequence[torch.Tensor], how: str = "mean") -> torch.Tensor:
    """Combine per-layer maps of equal shape ``(N, H, W)``: ``"mean"`` (default), ``"max"`` or ``"sum"``."""
    stacked = torch.stack(list(maps), dim=0)
    if how == "mean":
        return stacked.mean(dim=0)
    if how == "max":
        return stacked.max(dim=0).values
    if how == "sum":
        return stacked.sum(dim=0)
    raise ArgumentError(f"combine expects 'mean', 'max' or 'sum'; got {how!r}")


@contextlib.contextmanager
def _single_lapack_thread(device: torch.device) -> Iterator[None]:
    """Run small LAPACK calls on one CPU thread.

    MKL's multi-threaded LAPACK spins on small matrices: on a busy 2-core machine the SVD of eight
    49x1280 matrices took 8.5 s with 2 threads and 19 ms with 1. The thread count is restored after.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def eigen_projection(maps: torch.Tensor) -> torch.Tensor:
    """Project ``(N, C, h, w)`` onto each image's first principal component -> ``(N, h, w)``.

    Per image, the ``h*w`` positions are samples of a ``C``-dimensional vector. They are centred
    over positions and projected on the first right-singular vector ``v1`` of the centred
    ``(h*w, C)`` matrix, found with one batched thin SVD (``full_matrices=False``: ``U`` is at most
    the input's size, never a full ``(h*w) x (h*w)`` matrix). SVD leaves the sign of ``v1``
    arbitrary; camlens fixes it so that the projection correlates positively with the channel sum
    of ``maps`` (the plain CAM), so maps are never returned inverted.
    """
    n, c, h, w = maps.shape
    x = maps.float().reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    x = torch.nan_to_num(x - x.mean(dim=1, keepdim=True))
    with _single_lapack_thread(x.device):
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = (x @ vh[:, :1, :].transpose(1, 2))[..., 0]  # (N, hw), mean zero
    return align_sign(proj, maps.float().sum(dim=1)).reshape(n, h, w)


def align_sign(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip each ``(N, ...)`` map whose centred values correlate negatively with ``reference``
    (same shape), so that sign-ambiguous projections (PCA, kernel PCA) are never returned
    inverted. A zero correlation keeps the map as it is."""
    n = maps.shape[0]
    m = maps.reshape(n, -1)
    ref = reference.float().reshape(n, -1)
    ref = ref - ref.mean(dim=1, keepdim=True)
    sign = torch.sign(((m - m.mean(dim=1, keepdim=True)) * ref).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (m * sign).reshape(maps.shape)
