"""Non-negative matrix factorisation in torch (HALS), on the tensor's device, deterministic.

Used by :class:`camlens.methods.dff.DeepFeatureFactorization`; no scikit-learn at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ArgumentError, InputShapeError, InputTypeError

__all__ = ["NMFResult", "check_options", "nmf"]

_INITS = ("nndsvda", "nndsvd", "random")


@dataclass
class NMFResult:
    """``V ~= W @ H`` with ``W >= 0`` ``(m, k)`` and ``H >= 0`` ``(k, n)``."""

    W: torch.Tensor
    H: torch.Tensor
    error: float
    """Frobenius norm ``||V - W H||`` (scikit-learn's ``reconstruction_err_``)."""
    iterations: int


def _nndsvd(v: torch.Tensor, k: int, fill_zeros: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative double SVD (Boutsidis & Gallopoulos, 2008); ``fill_zeros``: zeros -> mean(V) ("nndsvda").

    Each singular pair enters through the positive or negative parts of its vectors, whichever
    carries more mass, so the result does not depend on the sign the SVD returned.
    """
    u, s, vt = torch.linalg.svd(v, full_matrices=False)
    w = torch.zeros(v.shape[0], k, dtype=v.dtype, device=v.device)
    h = torch.zeros(k, v.shape[1], dtype=v.dtype, device=v.device)
    w[:, 0] = s[0].sqrt() * u[:, 0].abs()
    h[0] = s[0].sqrt() * vt[0].abs()
    for j in range(1, min(k, s.shape[0])):
        x, y = u[:, j], vt[j]
        xp, xn, yp, yn = x.clamp_min(0), (-x).clamp_min(0), y.clamp_min(0), (-y).clamp_min(0)
        xpn, xnn, ypn, ynn = xp.norm(), xn.norm(), yp.norm(), yn.norm()
        mp, mn = xpn * ypn, xnn * ynn
        if mp > mn:
            a, b, sigma = xp / xpn, yp / ypn, mp
        elif mn > 0:
            a, b, sigma = xn / xnn, yn / ynn, mn
        else:
            continue
        scale = (s[j] * sigma).sqrt()
        w[:, j] = scale * a
        h[j] = scale * b
    if fill_zeros:
        mean = v.mean()
        w = torch.where(w == 0, mean, w)
        h = torch.where(h == 0, mean, h)
    return w, h


def check_options(n_components: int, max_iter: int, tol: float, init: str) -> None:
    """Raise :class:`~camlens.errors.ArgumentError` for settings :func:`nmf` does not accept."""
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ArgumentError(f"n_components must be a positive int; got {n_components!r}")
    if init not in _INITS:
        raise ArgumentError(f"init must be one of {list(_INITS)}; got {init!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ArgumentError(f"max_iter must be a positive int; got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ArgumentError(f"tol must be a number >= 0; got {tol!r}")


def nmf(
    v: torch.Tensor,
    n_components: int,
    *,
    max_iter: int = 200,
    tol: float = 1e-4,
    init: str = "nndsvda",
    seed: int = 0,
) -> NMFResult:
    """Factorise a non-negative ``(m, n)`` matrix ``V ~= W H`` minimising ``||V - W H||_F``.

    Hierarchical alternating least squares (HALS, Cichocki & Phan, 2009): one exact, clipped
    least-squares update per row of ``H``, then per column of ``W``, in turn:
    ``H_j <- max(0, H_j + ((W^T V)_j - (W^T W)_j H) / (W^T W)_jj)`` and the same for ``W``.
    Every 10 iterations the error is measured; it stops when it fell by less than
    ``tol * (initial error)`` since the last check (scikit-learn's rule). Runs on ``v``'s device
    in its floating dtype (float32 or float64); deterministic: ``init="nndsvda"`` (default) and
    ``"nndsvd"`` use no random numbers, ``"random"`` draws from ``seed``.

    Example::

        from camlens.nmf import nmf

        res = nmf(torch.rand(100, 30), 4)
        res.W.shape, res.H.shape, res.error   # (100, 4), (4, 30), ...
    """
    if not isinstance(v, torch.Tensor) or v.dim() != 2:
        raise InputShapeError(f"nmf expects a 2-D (m, n) tensor; got {getattr(v, 'shape', type(v).__name__)}")
    if not v.is_floating_point():
        raise InputTypeError(f"nmf expects a floating tensor; got dtype {v.dtype}")
    check_options(n_components, max_iter, tol, init)
    v = v.detach()
    if bool((v < 0).any()):
        raise ArgumentError("nmf expects a non-negative matrix; clamp it (v.clamp_min(0)) or shift it first")
    k = n_components
    if init == "random":
        g = torch.Generator().manual_seed(int(seed))
        scale = (v.mean() / k).sqrt().item()
        w = (torch.rand(v.shape[0], k, generator=g, dtype=torch.float64) * scale).to(v)
        h = (torch.rand(k, v.shape[1], generator=g, dtype=torch.float64) * scale).to(v)
    else:
        w, h = _nndsvd(v, k, fill_zeros=init == "nndsvda")
    tiny = torch.finfo(v.dtype).tiny

    def error() -> float:
        return float(torch.linalg.norm(v - w @ h))

    start = previous = error()
    it = 0
    for it in range(1, max_iter + 1):
        wtw, wtv = w.T @ w, w.T @ v
        for j in range(k):
            h[j] = (h[j] + (wtv[j] - wtw[j] @ h) / wtw[j, j].clamp_min(tiny)).clamp_min(0)
        hht, vht = h @ h.T, v @ h.T
        for j in range(k):
            w[:, j] = (w[:, j] + (vht[:, j] - w @ hht[:, j]) / hht[j, j].clamp_min(tiny)).clamp_min(0)
        if tol > 0 and it % 10 == 0:
            current = error()
            if start == 0 or (previous - current) / start < tol:
                break
            previous = current
    return NMFResult(W=w, H=h, error=error(), iterations=it)
