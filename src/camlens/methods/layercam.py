"""LayerCAM (Jiang et al., IEEE TIP 2021)."""

from __future__ import annotations

import torch

from ..registry import register
from .base import GradientCAM, LayerContext


@register("layercam", "layer-cam")
class LayerCAM(GradientCAM):
    """LayerCAM: positive gradients as element-wise weights.

    ``map = ReLU(sum_k ReLU(dy/dA_k) * A_k)``. Several layers are combined like any method (mean
    of normalised maps); the paper's optional tanh rescaling of shallow layers is not applied.

    Example::

        maps = LayerCAM(model, ["layer3", "layer4"])(input_tensor=x)
    """

    paper = "Jiang et al., LayerCAM: Exploring Hierarchical Class Activation Maps for Localization, IEEE TIP 2021"
    summary = "element-wise positive gradients x activations"
    formula = r"L^c = \operatorname{ReLU}\Big(\sum_k \operatorname{ReLU}\Big(\frac{\partial y^c}{\partial A^k}\Big)\odot A^k\Big)"
    cost = "one forward pass with autograd from the target layer on, plus one backward pass to the layer (about one forward pass in all; no parameter gradients)"

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        return ctx.gradients.clamp_min(0)
