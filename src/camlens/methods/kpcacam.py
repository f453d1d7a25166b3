"""KPCA-CAM (Karmani et al., 2024, arXiv:2410.00267)."""

from __future__ import annotations

import warnings

import torch

from .. import postprocess as pp
from ..engine import CamLensWarning
from ..errors import ArgumentError, InputTypeError
from ..registry import register
from .base import ActivationCAM, LayerContext

KERNELS = ("sigmoid", "rbf", "poly", "cosine", "linear")


def kernel_matrix(
    x: torch.Tensor, kernel: str, gamma: float | None = None, degree: int = 3, coef0: float = 1.0
) -> torch.Tensor:
    """Batched Gram matrix ``K[n, i, j] = k(x[n, i], x[n, j])`` of ``x`` shaped ``(N, P, C)``.

    ``gamma`` defaults to ``1 / C`` (scikit-learn's convention). Kernels::

        sigmoid  tanh(gamma <x, y> + coef0)
        rbf      exp(-gamma |x - y|^2)
        poly     (gamma <x, y> + coef0) ** degree
        cosine   <x, y> / (|x| |y|)          (0 for a zero vector)
        linear   <x, y>                      (kernel PCA == PCA, i.e. Eigen-CAM)
    """
    g = 1.0 / x.shape[-1] if gamma is None else float(gamma)
    dot = x @ x.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(g * dot + coef0)
    if kernel == "rbf":
        sq = dot.diagonal(dim1=1, dim2=2)
        dist = (sq[:, :, None] + sq[:, None, :] - 2 * dot).clamp_min(0)
        return torch.exp(-g * dist)
    if kernel == "poly":
        return (g * dot + coef0) ** degree
    if kernel == "cosine":
        norm = dot.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()
        denom = norm[:, :, None] * norm[:, None, :]
        return torch.where(denom > 0, dot / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(dot))
    if kernel == "linear":
        return dot
    raise ArgumentError(f"unknown KPCA kernel {kernel!r}; expected one of {', '.join(KERNELS)}")


def kernel_pca_first_component(
    x: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None, degree: int = 3, coef0: float = 1.0
) -> torch.Tensor:
    """First kernel principal component scores ``(N, P)`` of ``P`` samples per batch item ``(N, P, C)``.

    The Gram matrix is centred in feature space, ``Kc = K - 1K - K1 + 1K1`` (``1``: the ``P x P``
    matrix of ``1/P``); with ``(lambda, alpha)`` its top eigenpair (``|alpha| = 1``), the scores are
    ``Kc alpha / sqrt(lambda) = sqrt(lambda) * alpha`` (what scikit-learn's
    ``KernelPCA(n_components=1).fit_transform`` returns, up to sign). Computed in float64; a top
    eigenvalue below ``1e-12 * P * max|K|`` (a constant kernel, up to rounding) gives zeros.
    """
    k = kernel_matrix(x.double(), kernel, gamma, degree, coef0)
    scale = k.abs().amax(dim=(1, 2)) * k.shape[-1]
    k = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
    k = 0.5 * (k + k.transpose(1, 2))  # exact symmetry for eigh
    with pp._single_lapack_thread(k.device):
        vals, vecs = torch.linalg.eigh(k)  # ascending
    top = vals[:, -1:]
    top = torch.where(top > 1e-12 * scale[:, None], top, torch.zeros_like(top))  # rounding noise of a constant kernel
    return (vecs[:, :, -1] * top.sqrt()).to(x.dtype)


@register("kpcacam", "kpca-cam", "kpca_cam")
class KPCACAM(ActivationCAM):
    """KPCA-CAM: the activations projected on their first *kernel* principal component.

    Like Eigen-CAM, per image the ``h*w`` positions are samples of a ``C``-vector, centred over
    positions; kernel PCA (``kernel``: ``"sigmoid"`` (default, as in pytorch-grad-cam), ``"rbf"``,
    ``"poly"``, ``"cosine"`` or ``"linear"``; ``gamma`` default ``1/C``, ``degree`` 3, ``coef0`` 1)
    replaces PCA::

        Kc     = centred Gram matrix of k(a_i, a_j) over positions i, j
        map_i  = sqrt(lambda_1) * alpha_1[i]      (top eigenpair of Kc)

    The eigenvector's sign is arbitrary; as for Eigen-CAM, camlens fixes it so that the map
    correlates positively with the channel sum of the activations. Batched ``eigh`` of ``(N,
    hw, hw)`` matrices in torch on the model's device: no scikit-learn. Gradient-free and
    class-agnostic; ``eigen_smooth`` has no further effect (the map is a projection already).

    Paper: Karmani, Sarda, Tariq & Dhiman, "KPCA-CAM: Visual Explainability of Deep Computer
    Vision Models using Kernel PCA", 2024, arXiv:2410.00267.

    Example::

        maps = KPCACAM(model, "layer4", kernel="rbf", gamma=1e-3)(input_tensor=x)
    """

    paper = "Karmani et al., KPCA-CAM: Visual Explainability of Deep Computer Vision Models using Kernel PCA, 2024"
    summary = "first kernel principal component of the activations (no gradients, class-agnostic)"
    formula = r"K_{ij} = k(a_i, a_j),\quad \tilde K = \big(I - \tfrac{1}{hw}\mathbf{1}\mathbf{1}^\top\big) K \big(I - \tfrac{1}{hw}\mathbf{1}\mathbf{1}^\top\big),\quad \tilde K \alpha_1 = \lambda_1 \alpha_1,\qquad L_i = \sqrt{\lambda_1}\,\alpha_{1,i}"
    cost = "one forward pass without gradients, then one eigendecomposition of an (h w) x (h w) kernel matrix per image; no backward pass"

    def __init__(
        self,
        *args: object,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        degree: int = 3,
        coef0: float = 1.0,
        **kwargs: object,
    ) -> None:
        if not isinstance(kernel, str) or kernel not in KERNELS:
            raise ArgumentError(f"KPCACAM kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0):
            raise InputTypeError(f"KPCACAM gamma must be a positive number or None (1/C); got {gamma!r}")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.kernel, self.gamma, self.degree, self.coef0 = kernel, gamma, int(degree), float(coef0)

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        acts = ctx.activations
        n, c, h, w = acts.shape
        x = acts.reshape(n, c, h * w).transpose(1, 2)
        x = torch.nan_to_num(x - x.mean(dim=1, keepdim=True))
        proj = kernel_pca_first_component(x, self.kernel, self.gamma, self.degree, self.coef0)
        flat = proj.abs().amax(dim=1).eq(0) & x.flatten(1).abs().amax(dim=1).gt(0)
        if bool(flat.any()):
            warnings.warn(
                f"KPCA-CAM: the centred {self.kernel} kernel matrix of layer {ctx.name!r} is zero for image(s) "
                f"{flat.nonzero().flatten().tolist()[:8]} (activations around {float(x.abs().amax()):.3g} make the "
                f"kernel constant at gamma={self.gamma if self.gamma is not None else 1.0 / c:.3g}), so the map is "
                "blank; pass a gamma suited to the activations' scale or kernel='cosine' (scale-free)",
                CamLensWarning,
                stacklevel=4,
            )
        return pp.align_sign(proj, acts.sum(dim=1)).reshape(n, h, w)
