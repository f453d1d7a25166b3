"""Grad-CAM element-wise: like HiResCAM with a ReLU on each product before the channel sum."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("gradcamelementwise", "gradcam-elementwise", "gradcam_elementwise")
class GradCAMElementWise(GradientCAM):
    """Grad-CAM element-wise: ``map = ReLU(sum_k ReLU(dy/dA_k * A_k))``.

    A variant (from pytorch-grad-cam) of HiResCAM that keeps only positive element-wise
    contributions before summing, so negative evidence in one channel cannot cancel another.

    Example::

        maps = GradCAMElementWise(model, "layer4")(input_tensor=x)
    """

    paper = "Draelos & Carin 2020 (HiResCAM) with an element-wise ReLU, as introduced by pytorch-grad-cam"
    summary = "sum over channels of ReLU(gradient x activation)"
    formula = r"L^c = \operatorname{ReLU}\Big(\sum_k \operatorname{ReLU}\Big(\frac{\partial y^c}{\partial A^k}\odot A^k\Big)\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def weighted_activations(self, ctx: LayerContext) -> torch.Tensor:
        return (ctx.gradients * ctx.activations).clamp_min(0)
