"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, arXiv:2008.00299)."""

from __future__ import annotations

import torch

from .. import postprocess as pp
from ..registry import register
from .base import ActivationCAM, LayerContext


@register("eigencam", "eigen-cam")
class EigenCAM(ActivationCAM):
    """Eigen-CAM: the activations projected on their first principal component (class-agnostic).

    Per image, positions are samples of a C-vector; they are centred and projected on the first
    right-singular vector of the ``(h*w, C)`` matrix. The sign is fixed so that the map correlates
    positively with the channel sum of the activations. No gradients: one no-grad forward pass.

    Example::

        maps = EigenCAM(model, "layer4")(input_tensor=x)
    """

    paper = "Muhammad & Yeasin, Eigen-CAM: Class Activation Map using Principal Components, IJCNN 2020"
    summary = "first principal component of the activations (no gradients, class-agnostic)"
    formula = r"\tilde{A} = A - \bar{A} \in \mathbb{R}^{hw \times C},\quad \tilde{A} = U \Sigma V^\top,\quad L = \pm\,\tilde{A}\,v_1 \;\;(\text{sign: positive correlation with } \textstyle\sum_k A^k)"
    cost = "one forward pass without autograd (no gradients), plus a thin SVD per image"

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        return pp.eigen_projection(ctx.activations)
