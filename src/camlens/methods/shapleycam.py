"""ShapleyCAM (Cai, "CAMs as Shapley Value-based Explainers", 2025, arXiv:2501.06261)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..registry import register
from .base import GradientCAM, LayerContext, spatial_dims

__all__ = ["ShapleyCAM"]


@register("shapleycam", "shapley-cam")
class ShapleyCAM(GradientCAM):
    """ShapleyCAM: Grad-CAM's weights corrected by the second-order term of the score's Taylor expansion.

    ``w_k = 1/(h*w) * sum_ij (g - 1/2 * H A)_k[i, j]``;  ``map = ReLU(sum_k w_k * A_k)``, with
    ``g = dS/dA`` and ``H A`` the Hessian of the score with respect to the layer's activations
    times the activations (a Hessian-vector product). The paper derives it as a closed-form
    approximation of each channel's Shapley value and pairs it with the ReST target
    (:class:`camlens.targets.ClassifierOutputReST`, logit minus cross-entropy); for a tail that is
    linear in ``A`` (pooling + linear head) and a logit target ``H A = 0`` and the map is Grad-CAM's.

    Cost: autograd is recorded from the target layer on only, so ``H A`` is one double backward
    through the network's tail (no graph before the layer, no parameter gradient). With several
    target layers each layer gets its own Hessian block. Same numbers as pytorch-grad-cam 1.5.7.

    Example::

        from camlens.targets import ClassifierOutputReST
        cam = ShapleyCAM(model, "layer4")
        maps = cam(input_tensor=x, targets=[ClassifierOutputReST(281)] * len(x))
    """

    paper = "Cai, CAMs as Shapley Value-based Explainers, 2025 (arXiv:2501.06261)"
    summary = "channel weights = spatial mean of (gradient - 1/2 Hessian x activations)"
    formula = r"g = \frac{\partial y^c}{\partial A},\quad H = \frac{\partial^2 y^c}{\partial A^2},\quad w^c_k = \frac{1}{hw}\sum_{i,j}\Big(g - \tfrac{1}{2} H A\Big)^k_{ij},\qquad L^c = \operatorname{ReLU}\Big(\sum_k w^c_k A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, one backward pass to the layer and one double backward through the network's tail for the Hessian-vector product H A; no parameter gradients"
    engine_options: ClassVar[dict[str, Any]] = {"hessian_vector": True}

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return (ctx.gradients - 0.5 * ctx.hessian_vector).mean(dim=spatial_dims(ctx.gradients), keepdim=True)
