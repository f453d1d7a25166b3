"""Seg-Eigen-CAM (Chung & Ying, Applied Sciences 2025), as shipped by pytorch-grad-cam."""

from __future__ import annotations

import torch

from .. import postprocess as pp
from ..registry import register
from .base import GradientCAM, LayerContext


@register("segeigencam", "seg-eigen-cam", "seg-eigencam")
class SegEigenCAM(GradientCAM):
    """Seg-Eigen-CAM: first principal component of ``|dy/dA| * A``, sign-corrected by its extremes.

    Per image: ``W = |dy/dA| * A`` (element-wise, Eq. 10: absolute gradients keep positive and
    negative evidence); the ``h*w`` positions of ``W`` are centred and projected on the first
    right-singular vector ``v1`` (Eq. 11-12); the sign is then fixed as in Eq. 13::

        p = (W - mean_positions(W)) v1;    map = -p if |min p| > |max p| else p

    so the larger-magnitude extreme is positive. Meant for segmentation models (use
    ``SemanticSegmentationTarget``), works for any target. ``eigen_smooth`` has no further effect.

    Paper: Chung & Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic
    Segmentation Models", Applied Sciences 15(13):7562, 2025 (pytorch-grad-cam ``SegEigenCAM``).

    Example::

        cam = SegEigenCAM(seg_model, "backbone.layer4")
        maps = cam(input_tensor=x, targets=[SemanticSegmentationTarget(category, mask)])
    """

    paper = "Chung & Ying, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models, Appl. Sci. 2025"
    summary = "first principal component of |gradient| x activation, sign so the larger extreme is positive"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients.abs()

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        proj = pp.eigen_projection(self.weighted_activations(ctx))  # (N, h, w), sign still to fix
        flat = proj.flatten(1)
        flip = flat.min(dim=1).values.abs() > flat.max(dim=1).values.abs()
        return torch.where(flip[:, None, None], -proj, proj)
