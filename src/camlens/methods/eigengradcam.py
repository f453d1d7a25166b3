"""Eigen-Grad-CAM: Eigen-CAM applied to gradient x activation (class-discriminative)."""

from __future__ import annotations

import torch

from .. import postprocess as pp
from ..registry import register
from .base import GradientCAM, LayerContext


@register("eigengradcam", "eigen-gradcam")
class EigenGradCAM(GradientCAM):
    """Eigen-Grad-CAM: first principal component of ``dy/dA * A``.

    Like Eigen-CAM (Muhammad & Yeasin 2020) but on gradient-weighted activations, so the map
    depends on the target class. The sign is fixed so the map correlates positively with
    ``sum_k dy/dA_k * A_k``.

    Example::

        maps = EigenGradCAM(model, "layer4")(input_tensor=x, target_category=281)
    """

    paper = "Muhammad & Yeasin 2020 (Eigen-CAM) on gradient x activation, as introduced by pytorch-grad-cam"
    summary = "first principal component of gradient x activation"
    formula = r"B = \frac{\partial y^c}{\partial A}\odot A,\quad \tilde{B} = B - \bar{B} \in \mathbb{R}^{hw \times C},\quad \tilde{B} = U \Sigma V^\top,\quad L^c = \pm\,\tilde{B}\,v_1"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients), plus a thin SVD per image"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        return pp.eigen_projection(self.weighted_activations(ctx))
