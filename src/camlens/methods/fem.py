"""FEM, the Feature Explanation Method (Fuad et al., IPTA 2020)."""

from __future__ import annotations

import warnings

import torch

from .. import postprocess as pp
from ..engine import CamLensWarning
from ..errors import InputTypeError
from ..registry import register
from .base import ActivationCAM, LayerContext


@register("fem", "feature-explanation-method")
class FEM(ActivationCAM):
    """FEM: k-sigma binary masks of the channels, weighted by each channel's mean and summed.

    Per image and channel ``k`` (``mu_k``, ``sigma_k``: mean and population standard deviation of
    ``A_k`` over the ``h*w`` positions)::

        B_k[i, j] = 1  if A_k[i, j] >= mu_k + k_sigma * sigma_k  else 0
        map       = sum_k mu_k * B_k

    Gradient-free and class-agnostic (one no-grad forward pass); ``k_sigma = 2`` as in the paper.
    With ``eigen_smooth`` the weighted masks ``mu_k * B_k`` are projected on their first principal
    component instead of summed.

    Differs from pytorch-grad-cam 1.5.7's ``FEM``, which weights the *activations* by the
    *fraction of positions inside the mask* (``sum_k mean(B_k) * A_k``) and thresholds with ``>``;
    camlens follows the paper (and Xplique's FEM): the *masks* weighted by the *channel mean*
    (``sum_k mean(A_k) * B_k``), positions at or above the threshold.

    Paper: Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, "Features understanding in 3D CNNs
    for actions recognition in video", IPTA 2020.

    Example::

        maps = FEM(model, "layer4")(input_tensor=x)           # k_sigma=2
        maps = FEM(model, "layer4", k_sigma=3)(input_tensor=x)
    """

    paper = "Fuad et al., Features understanding in 3D CNNs for actions recognition in video (FEM), IPTA 2020"
    summary = "k-sigma binary channel masks weighted by the channel means (no gradients, class-agnostic)"
    formula = r"B^k_{ij} = \mathbf{1}\big[A^k_{ij} \ge \mu_k + k_\sigma \sigma_k\big],\qquad L = \sum_k \mu_k B^k"
    cost = "one forward pass without gradients; no backward pass"

    def __init__(self, *args: object, k_sigma: float = 2.0, k: float | None = None, **kwargs: object) -> None:
        if k is not None:  # pytorch-grad-cam's spelling
            k_sigma = k
        if isinstance(k_sigma, bool) or not isinstance(k_sigma, (int, float)):
            raise InputTypeError(f"FEM k_sigma must be a number (2 in the paper); got {type(k_sigma).__name__}")
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.k_sigma = float(k_sigma)

    def weighted_masks(self, activations: torch.Tensor) -> torch.Tensor:
        """``mu_k * B_k`` of ``(N, C, h, w)`` activations, same shape."""
        mean = activations.mean(dim=(2, 3), keepdim=True)
        std = activations.std(dim=(2, 3), keepdim=True, correction=0)
        mask = activations >= mean + self.k_sigma * std
        return mask.to(activations.dtype) * mean

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        positions = ctx.activations.shape[2] * ctx.activations.shape[3]
        if positions - 1 <= self.k_sigma**2:
            # No value of n samples lies more than sqrt(n - 1) population std above their mean.
            warnings.warn(
                f"FEM: layer {ctx.name!r} has only {positions} positions, so no activation can reach mean + "
                f"{self.k_sigma:g} std (at most sqrt({positions} - 1) std above the mean) and the map is blank; "
                "use a larger input, an earlier layer, or a smaller k_sigma",
                CamLensWarning,
                stacklevel=4,
            )
        weighted = self.weighted_masks(ctx.activations)
        if eigen_smooth:
            return pp.eigen_projection(weighted)
        return weighted.sum(dim=1)
