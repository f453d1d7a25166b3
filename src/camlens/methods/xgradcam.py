"""XGrad-CAM (Fu et al., BMVC 2020, arXiv:2008.02312)."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("xgradcam", "xgrad-cam")
class XGradCAM(GradientCAM):
    """XGrad-CAM: gradients weighted by the normalised activations.

    ``w_k = sum_ij (A_k[i,j] / sum_ab A_k[a,b]) * dy/dA_k[i,j]``; a channel whose activations sum
    to 0 gets weight 0.

    Example::

        maps = XGradCAM(model, [model.layer4[-1]])(input_tensor=x)
    """

    paper = "Fu et al., Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs, BMVC 2020"
    summary = "gradients weighted by activations normalised per channel (axiom-based)"
    formula = r"w^c_k = \sum_{i,j}\frac{A^k_{ij}}{\sum_{a,b}A^k_{ab}}\,\frac{\partial y^c}{\partial A^k_{ij}},\qquad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        a = ctx.activations
        total = a.sum(dim=(2, 3), keepdim=True)
        num = (a * ctx.gradients).sum(dim=(2, 3), keepdim=True)
        safe = torch.where(total != 0, total, torch.ones_like(total))
        return torch.where(total != 0, num / safe, torch.zeros_like(num))
