"""RefineCAM: the product of one method's maps over several layers ("How to Evaluate and Refine your CAM",
arXiv:2605.14641, as shipped by pytorch-grad-cam 1.5.7 and torchcam 0.5.0)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import postprocess as pp
from ..errors import InputTypeError, LayerNotFoundError
from ..registry import register
from .base import BaseCAM, LayerContext, build_base_method, wrapper_options

__all__ = ["RefineCAM"]


@register("refinecam", "refine-cam")
class RefineCAM(BaseCAM):
    """RefineCAM: a base method's maps at several layers, multiplied together.

    ``map = minmax(prod_l minmax(Up(ReLU(M_l))))`` where ``M_l`` is ``base_method``'s raw map at
    layer ``l`` (Grad-CAM++ by default, as in both peers): each layer's map is ReLU'd, upsampled to
    the input and scaled to ``[0, 1]``, the maps are multiplied pixel by pixel, and the product is
    scaled to ``[0, 1]`` again. A region survives only where every layer agrees, which keeps an
    early layer's resolution and drops its noise. Needs at least two target layers.

    All layers come from one forward (and, for gradient methods, one backward) pass; the peers run
    the base method once per layer. ``eigen_smooth``, ``aug_smooth`` and ``reshape_transform``
    act on the base method's per-layer maps. ``exp.layer_maps`` holds the base method's raw maps.

    Differences from the peers: pytorch-grad-cam 1.5.7 scales each layer's map before resizing it
    to the input (camlens upsamples first, as for every method); torchcam 0.5.0 resizes to the
    largest layer instead of the input. Correlation with pytorch-grad-cam is ~0.99+.

    Example::

        cam = RefineCAM(model, ["layer2", "layer3", "layer4"], base_method=LayerCAM)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "How to Evaluate and Refine your CAM, 2026 (arXiv:2605.14641); pytorch-grad-cam / torchcam RefineCAM"
    summary = "product over several layers of a base method's normalised maps (Grad-CAM++ by default)"
    formula = r"L^c = \operatorname{minmax}\Big(\prod_l \operatorname{minmax}\Big(\operatorname{Up}\big(\operatorname{ReLU}(M^c_l)\big)\Big)\Big)\quad (M^c_l:\ \text{the base method's map at layer } l)"
    cost = "the base method's passes once for all target layers (Grad-CAM++: one forward pass plus one backward pass); every layer is captured in the same passes"

    def __init__(
        self,
        model: nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        base_method: type[BaseCAM] | None = None,
        **kwargs: Any,
    ) -> None:
        if base_method is None:
            from .gradcampp import GradCAMPlusPlus

            base_method = GradCAMPlusPlus
        if not (isinstance(base_method, type) and issubclass(base_method, BaseCAM)):
            raise InputTypeError(f"base_method must be a camlens CAM class such as GradCAMPlusPlus; got {base_method!r}")
        own_pipeline = [f for f in ("explain", "_layer_maps", "_finish") if getattr(base_method, f) is not getattr(BaseCAM, f)]
        if own_pipeline or getattr(base_method, "factorize", None) is not None:
            raise InputTypeError(
                f"RefineCAM multiplies per-layer maps, and {base_method.__name__} does not make one map per target "
                "layer; use a layer method such as GradCAMPlusPlus, GradCAM, LayerCAM, ScoreCAM"
            )
        super().__init__(model, target_layers, use_cuda, reshape_transform, **wrapper_options(kwargs))
        if len(self.layers) < 2:
            raise LayerNotFoundError(
                f"RefineCAM multiplies the maps of several layers and needs at least two target layers; got "
                f"{self.target_layer_names}. Pass e.g. target_layers=['layer3', 'layer4']"
            )
        self.base = build_base_method(self, base_method, model, kwargs)
        self.engine = self.base.engine
        self.uses_gradients = self.base.uses_gradients  # type: ignore[misc]

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        return self.base.layer_map(ctx, eigen_smooth)

    def _finish(self, raw_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        product = None
        for m in raw_maps:
            m = pp.relu(m) if self.base.apply_relu else m
            m = pp.minmax_normalize(pp.upsample(m, size))
            product = m if product is None else product * m
        return pp.minmax_normalize(product)  # type: ignore[arg-type]
