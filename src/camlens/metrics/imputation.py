"""Noisy linear imputation (ROAD's): fill removed pixels from their neighbours, plus a little noise.

Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022, section 4. Every removed pixel takes the weighted mean of its 8
neighbours (weight 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones; weights of
neighbours outside the image are dropped). Removed neighbours are unknowns too, so per image and
channel this is the sparse linear system, for each removed pixel ``p``::

    s_p x_p - sum_{q in N(p), q removed} w_pq x_q = sum_{q in N(p), q kept} w_pq I_q,   s_p = sum_{q in N(p)} w_pq

followed by i.i.d. Gaussian noise of standard deviation ``noise`` (0.01 in the authors' code; in
the units of the tensor given) on the imputed pixels. The matrix is symmetric positive definite
whenever at least one pixel is kept.

Two solvers give the same answer (to the conjugate gradient's tolerance):

* ``"direct"`` -- :func:`noisy_linear_impute_direct`: an exact sparse direct solve per image with
  scipy, as the authors do; the default for CPU tensors when scipy is installed (it is faster
  there);
* ``"cg"`` -- all images and channels of a batch at once with a Jacobi-preconditioned conjugate
  gradient on the tensor's device, started from a coarse-to-fine solution, matrix-free (a few
  element-wise ops per iteration); the default on GPUs or without scipy.

>>> import torch
>>> x = torch.rand(1, 3, 8, 8); removed = torch.zeros(1, 8, 8, dtype=torch.bool); removed[0, 2:5, 2:5] = True
>>> noisy_linear_impute(x, removed, noise=0.0).shape
torch.Size([1, 3, 8, 8])
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArgumentError, CamLensWarning, DependencyError, InputShapeError
from ._common import as_images

__all__ = ["NEIGHBOUR_WEIGHTS", "SOLVERS", "noisy_linear_impute", "noisy_linear_impute_direct"]

NEIGHBOUR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
"""3x3 weights of the 8 neighbours (row offset -1..1, column offset -1..1)."""

SOLVERS = ("auto", "cg", "direct")


def _check_removed(x: torch.Tensor, removed: Any) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(removed) if not isinstance(removed, torch.Tensor) else removed)
    if m.dim() == 2:
        m = m[None]
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    n, _, h, w = x.shape
    if tuple(m.shape) != (n, h, w):
        raise InputShapeError(f"removed must be a boolean (N, H, W) mask matching the images {tuple(x.shape)}; got {tuple(m.shape)}")
    return (m > 0.5 if m.is_floating_point() else m.bool()).to(x.device)


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """``sum_q w_pq v_q`` over the 8 neighbours (zero outside the image), for ``(..., H, W)``.

    The weights are ``(outer([1, 2, 1], [1, 2, 1]) - 4 * centre) / 12``: a separable [1, 2, 1]
    pass per axis minus four times the centre, a handful of element-wise ops (much faster than a
    depthwise convolution on CPU, and exact).
    """
    p = F.pad(v, (1, 1, 1, 1))
    rows = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    both = rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]
    return (both - 4 * v) / 12


def _pyramid_fill(img: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels of ``(B, C, H, W)`` from known ones, coarse to fine (initial guess)."""
    h, w = img.shape[-2:]
    if bool(known.all()) or min(h, w) <= 2:
        den = known.sum(dim=(2, 3), keepdim=True)
        mean = (img * known).sum(dim=(2, 3), keepdim=True) / den.clamp_min(1)
        return torch.where(known, img, mean.expand_as(img))
    num = F.avg_pool2d(img * known, 2, ceil_mode=True)
    den = F.avg_pool2d(known.to(img.dtype), 2, ceil_mode=True)
    coarse_known = den > 0
    coarse = torch.where(coarse_known, num / den.clamp_min(1e-12), torch.zeros_like(num))
    filled = _pyramid_fill(coarse, coarse_known.expand_as(coarse))
    up = F.interpolate(filled, size=(h, w), mode="bilinear", align_corners=False)
    return torch.where(known, img, up)

_COARSEST = 16


def _have_scipy() -> bool:
    try:
        import scipy.sparse.linalg  # noqa: F401
    except ImportError:
        return False
    return True


def _cascadic_solve(x: torch.Tensor, gone: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, bool]:
    """Solve the imputation system for ``(B, C, H, W)`` images, ``gone`` ``(B, 1, H, W)`` bool.

    Cascadic multigrid: the problem is first solved on a 2x coarser grid (a coarse pixel is kept
    when any of its 2x2 pixels is), its solution upsampled as the starting point, and the
    conjugate gradient then only removes the fine-scale error. Returns the filled images.
    """
    h, w = x.shape[-2:]
    if min(h, w) >= 2 * _COARSEST:
        known = (~gone).to(x.dtype)
        num = F.avg_pool2d(x * known, 2, ceil_mode=True)
        den = F.avg_pool2d(known, 2, ceil_mode=True)
        coarse_gone = den <= 0
        coarse = torch.where(coarse_gone, torch.zeros_like(num), num / den.clamp_min(1e-12))
        coarse_sol, _ = _cascadic_solve(coarse, coarse_gone, tol, max_iter)
        start = F.interpolate(coarse_sol, size=(h, w), mode="bilinear", align_corners=False)
    else:
        start = _pyramid_fill(x, (~gone).expand_as(x))
    return _cg_solve(x, gone, start, tol, max_iter)


def _cg_solve(
    x: torch.Tensor, gone: torch.Tensor, start: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, bool]:
    """Jacobi-preconditioned conjugate gradient, one independent system per image and channel.

    The operator is applied matrix-free: ``A v = m * (s * v - N(m * v))`` with ``m`` the removed
    mask, ``s`` the in-bounds neighbour weight sum and ``N`` the 8-neighbour weighted sum.
    """
    c, h, w = x.shape[1:]
    m = gone.to(x.dtype)
    s = _neighbour_sum(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device))
    b = m * _neighbour_sum((1 - m) * x)

    def apply(v: torch.Tensor) -> torch.Tensor:
        return m * (s * v - _neighbour_sum(m * v))

    def dot(a: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return (a * b_).sum(dim=(2, 3), keepdim=True)

    sol = m * start
    r = b - apply(sol)
    z = r / s
    p = z
    rz = dot(r, z)
    b_norm = dot(b, b).sqrt()
    limit = (tol * torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))) ** 2
    converged = False
    for it in range(max_iter + 1):
        if it % 8 == 0 and bool((dot(r, r) <= limit).all()):
            converged = True
            break
        if it == max_iter:
            break
        ap = apply(p)
        pap = dot(p, ap)
        ok = pap > 0
        alpha = torch.where(ok, rz / torch.where(ok, pap, torch.ones_like(pap)), torch.zeros_like(pap))
        sol = sol + alpha * p
        r = r - alpha * ap
        z = r / s
        rz_new = dot(r, z)
        ok = rz > 0
        beta = torch.where(ok, rz_new / torch.where(ok, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return torch.where(gone, sol, x), converged


def noisy_linear_impute(
    input_tensor: torch.Tensor,
    removed: Any,
    *,
    noise: float = 0.01,
    seed: int | None = 0,
    tol: float = 1e-5,
    max_iter: int = 1000,
    solver: str = "auto",
) -> torch.Tensor:
    """Noisy linear imputation of the ``removed`` pixels of every image, batched on the device.

    Args:
        input_tensor: ``(N, C, H, W)`` images.
        removed: boolean ``(N, H, W)``: ``True`` where the pixel is removed and imputed.
        noise: standard deviation of the Gaussian noise added to imputed pixels (0: none).
        seed: seed of the noise (``None``: torch's global generator).
        tol: stop when every system's residual norm is below ``tol`` times its right-hand side's.
        max_iter: conjugate-gradient iterations at most (a warning is given if not converged).
        solver: ``"cg"`` (batched conjugate gradient on the tensor's device), ``"direct"`` (exact
            sparse solve per image with scipy, on the CPU) or ``"auto"``: ``"direct"`` for CPU
            tensors when scipy is installed (it is faster there), else ``"cg"``.

    Returns ``(N, C, H, W)``: kept pixels unchanged, removed pixels imputed.
    """
    x = as_images(input_tensor, metric="camlens.metrics.noisy_linear_impute")
    gone = _check_removed(x, removed)
    n, c, h, w = x.shape
    if bool(gone.reshape(n, -1).all(dim=1).any()):
        raise ArgumentError("noisy linear imputation needs at least one kept pixel per image; every pixel is removed")
    if solver not in SOLVERS:
        raise ArgumentError(f"solver must be one of {SOLVERS}; got {solver!r}")
    if solver == "auto":
        solver = "direct" if x.device.type == "cpu" and _have_scipy() else "cg"
    if solver == "direct":
        return noisy_linear_impute_direct(x, gone, noise=noise, seed=seed)
    sol, converged = _cascadic_solve(x, gone[:, None], tol, max_iter)
    if not converged:
        warnings.warn(
            f"noisy linear imputation did not reach tol={tol} in {max_iter} conjugate-gradient iterations; "
            "raise max_iter or tol",
            CamLensWarning,
            stacklevel=2,
        )
    m = gone[:, None].to(x.dtype)
    if noise > 0:
        gen = None
        if seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(int(seed))
        sol = sol + m * (noise * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))
    return torch.where(gone[:, None], sol, x)


def noisy_linear_impute_direct(
    input_tensor: torch.Tensor, removed: Any, *, noise: float = 0.0, seed: int | None = 0
) -> torch.Tensor:
    """The same imputation solved exactly with a sparse direct solver (scipy), one image at a time.

    The ``solver="direct"`` of :func:`noisy_linear_impute` (its default for CPU tensors), as the
    authors solve it: the exact answer, which the conjugate-gradient solver is tested against.
    Needs scipy (``pip install scipy``).
    """
    try:
        import scipy.sparse as sp
        from scipy.sparse.linalg import spsolve
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            "the direct imputation solver needs scipy: pip install scipy (or pass solver='cg')"
        ) from exc
    x = as_images(input_tensor, metric="camlens.metrics.noisy_linear_impute_direct")
    gone = _check_removed(x, removed).cpu().numpy()
    img = x.detach().cpu().double().numpy()
    n, c, h, w = img.shape
    weights = np.asarray(NEIGHBOUR_WEIGHTS)
    out = img.copy()
    for i in range(n):  # one sparse system per image
        rows, cols = np.nonzero(gone[i])
        if rows.size == 0:
            continue
        index = -np.ones((h, w), dtype=np.int64)
        index[rows, cols] = np.arange(rows.size)
        diag = np.zeros(rows.size)
        rhs = np.zeros((rows.size, c))
        a_r, a_c, a_v = [], [], []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                wgt = weights[dr + 1, dc + 1]
                if wgt == 0:
                    continue
                nr, nc = rows + dr, cols + dc
                ok = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
                diag[ok] += wgt
                var = np.flatnonzero(ok)
                nbr = index[nr[ok], nc[ok]]
                unknown = nbr >= 0
                a_r.append(var[unknown])
                a_c.append(nbr[unknown])
                a_v.append(np.full(int(unknown.sum()), -wgt))
                known = var[~unknown]
                rhs[known] += wgt * img[i][:, nr[ok][~unknown], nc[ok][~unknown]].T
        a = sp.coo_matrix(
            (np.concatenate(a_v + [diag]), (np.concatenate(a_r + [np.arange(rows.size)]), np.concatenate(a_c + [np.arange(rows.size)]))),
            shape=(rows.size, rows.size),
        ).tocsc()
        sol = spsolve(a, rhs).reshape(rows.size, c)
        out[i][:, rows, cols] = sol.T
    result = torch.from_numpy(out).to(device=x.device, dtype=x.dtype)
    if noise > 0:
        gen = torch.Generator(device=x.device).manual_seed(int(seed)) if seed is not None else None
        noise_t = noise * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        result = torch.where(torch.from_numpy(gone).to(x.device)[:, None], result + noise_t, result)
    return result
