"""Grad-CAM (Selvaraju et al., ICCV 2017, arXiv:1610.02391)."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("gradcam", "grad-cam")
class GradCAM(GradientCAM):
    """Grad-CAM: channel weights are the spatially averaged gradients.

    ``w_k = 1/(h*w) * sum_ij dy/dA_k[i, j]``;  ``map = ReLU(sum_k w_k * A_k)``.

    Example::

        cam = GradCAM(model, target_layers=[model.layer4[-1]])
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017"
    summary = "channel weights = spatial mean of the gradients"
    formula = r"w^c_k = \frac{1}{hw}\sum_{i,j}\frac{\partial y^c}{\partial A^k_{ij}},\qquad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients.mean(dim=(2, 3), keepdim=True)
