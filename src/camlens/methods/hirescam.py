"""HiResCAM (Draelos & Carin, 2020, arXiv:2011.08891)."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("hirescam", "hires-cam")
class HiResCAM(GradientCAM):
    """HiResCAM: element-wise gradient x activation, summed over channels.

    ``map = ReLU(sum_k dy/dA_k * A_k)``: provably faithful for models ending in a linear layer
    applied to flattened features.

    Example::

        maps = HiResCAM(model, "layer4")(input_tensor=x)
    """

    paper = "Draelos & Carin, Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural networks, 2020"
    summary = "element-wise gradient x activation, summed over channels"
    formula = r"L^c = \operatorname{ReLU}\Big(\sum_k \frac{\partial y^c}{\partial A^k}\odot A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients
