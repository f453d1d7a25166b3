"""Grad-CAM++ (Chattopadhay et al., WACV 2018, arXiv:1710.11063)."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("gradcam++", "gradcampp", "gradcamplusplus")
class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++: pixel-wise weighted positive gradients.

    The paper's general coefficient (eq. 10) is
    ``alpha_ij = d2Y/dA_ij^2 / (2 d2Y/dA_ij^2 + sum_ab A_ab d3Y/dA_ij^3)`` and
    ``w_k = sum_ij alpha_ij * ReLU(dY/dA_ij)``. With the paper's exponential output ``Y = exp(S)``
    and a piecewise-linear network (ReLU), the higher derivatives are powers of ``g = dS/dA``
    times ``exp(S)`` (eqs. 17-19), which cancels in ``alpha``:
    ``alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab * g_ij^3)``, and ``exp(S) > 0`` only rescales
    every ``w_k`` alike, so ``w_k = sum_ij alpha_ij * ReLU(g_ij)``. camlens uses this form, like
    the paper's own code, computed as ``alpha = 1 / (2 + sum_ab A_ab * g_ij)`` (equal for
    ``g != 0``; only ``g > 0`` contributes). Where the denominator is 0, ``alpha`` is 0: no
    division by zero and no epsilon. (pytorch-grad-cam adds 1e-6 to the denominator; with the
    small gradients of real networks ``g^2`` is often below 1e-6, so its maps differ.)

    Example::

        maps = GradCAMPlusPlus(model, "layer4")(input_tensor=x, target_category=281)
    """

    paper = "Chattopadhay et al., Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks, WACV 2018"
    summary = "pixel-wise alpha-weighted positive gradients (exp-score closed form)"
    formula = r"g^k_{ij} = \frac{\partial y^c}{\partial A^k_{ij}},\quad \alpha^k_{ij} = \frac{(g^k_{ij})^2}{2\,(g^k_{ij})^2 + \sum_{a,b} A^k_{ab}\,(g^k_{ij})^3},\quad w^c_k = \sum_{i,j}\alpha^k_{ij}\operatorname{ReLU}(g^k_{ij}),\quad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        # 2 + S g can nearly cancel when activations are signed; float64 keeps alpha accurate.
        wide = torch.float32 if ctx.gradients.device.type == "mps" else torch.float64
        g = ctx.gradients.to(wide)
        a_sum = ctx.activations.to(wide).sum(dim=(2, 3), keepdim=True)
        # For g != 0, g^2 / (2 g^2 + S g^3) = 1 / (2 + S g): the same value without powers of a
        # small gradient that lose precision in float32. Only g > 0 matters (ReLU(g) weights it).
        denom = 2 + a_sum * g
        positive = (g > 0) & (denom != 0)
        alpha = torch.where(positive, 1 / torch.where(positive, denom, torch.ones_like(denom)), torch.zeros_like(g))
        return (alpha * g.clamp_min(0)).sum(dim=(2, 3), keepdim=True).to(ctx.gradients.dtype)
