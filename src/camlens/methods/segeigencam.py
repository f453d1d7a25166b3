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

        seg_model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                                  num_classes=3).eval()
        # its output {"out": (N, classes, H, W)} is read by camlens' default output adapter
        mask = np.ones((32, 32), dtype=np.float32)                       # the pixels of class 1 that count
        cam = SegEigenCAM(seg_model, "backbone.layer4")
        maps = cam(input_tensor=x, targets=[SemanticSegmentationTarget(1, mask)] * len(x))
    """

    paper = "Chung & Ying, Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic Segmentation Models, Appl. Sci. 2025"
    summary = "first principal component of |gradient| x activation, sign so the larger extreme is positive"
    formula = r"W = \Big|\frac{\partial y^c}{\partial A}\Big| \odot A,\quad p = \big(W - \bar W\big)\, v_1,\qquad L^c = \begin{cases} -p & \text{if } |\min p| > |\max p| \\ p & \text{otherwise} \end{cases}"
    cost = "one forward pass plus one backward pass to the target layer (as Grad-CAM), then one SVD of the (h w) x C matrix per image"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients.abs()

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        proj = pp.eigen_projection(self.weighted_activations(ctx))  # (N, h, w), sign still to fix
        flat = proj.flatten(1)
        flip = flat.min(dim=1).values.abs() > flat.max(dim=1).values.abs()
        return torch.where(flip[:, None, None], -proj, proj)
