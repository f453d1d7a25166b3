"""CAM, the original class activation map (Zhou et al., CVPR 2016, arXiv:1512.04150)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import postprocess as pp
from ..errors import InputTypeError, LayerNotFoundError, LayerOutputError, TargetError
from ..hooks import LayerSpec, resolve_layers
from ..registry import register
from ..targets import ClassifierOutputTarget
from .base import ActivationCAM, LayerContext

__all__ = ["CAM"]


@register("cam", "classactivationmap")
class CAM(ActivationCAM):
    """CAM: the linear classifier's weights for the class weight the channels it pools.

    For a network that ends in global average pooling and a linear layer,
    ``y_c = sum_k w_ck * mean_ij F_k[i, j] + b_c``, and ``map_c = sum_k w_ck * F_k``, where ``F``
    is the target layer's output and ``w_c`` the linear layer's row for class ``c``. As in the
    paper (and torchcam) the map is not ReLU'd: it is min-max normalised as it is. No gradient is
    computed (one plain forward pass).

    ``F`` is the target layer's output, or its ReLU when the head applies one before pooling
    (DenseNet's ``features`` -> ReLU -> pool). camlens checks on every call that the linear layer
    applied to the spatial mean of ``F`` reproduces the model's output; if it does not (a ViT's
    class-token head, a norm or an MLP between the pooling and the last linear layer, or a target
    layer that is not the pooled one), it raises a clear error instead of returning a map that
    does not decompose the score. Targets must be class indices (:class:`ClassifierOutputTarget`
    or a subclass); the map depends on the class only.

    Args:
        fc_layer: the linear classifier (module or dotted name); default: the model's last
            ``nn.Linear``.

    Like torchcam 0.5.0 (whose maps it matches), the bias is left out of the map: it adds the
    same constant everywhere. Several target layers are not meaningful (only one layer is pooled
    into the classifier; the others fail the check).

    Example::

        cam = CAM(model, "layer4")                       # fc found automatically
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016"
    summary = "channel weights = the linear classifier's row for the class (global-average-pooling nets)"
    formula = r"y^c = \sum_k w^c_k\, \frac{1}{hw}\sum_{i,j} F^k_{ij} + b^c,\qquad L^c = \sum_k w^c_k F^k"
    cost = "one forward pass without gradients; no backward pass"
    uses_gradients: ClassVar[bool] = False
    apply_relu: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        *,
        fc_layer: LayerSpec | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, target_layers, use_cuda, reshape_transform, **kwargs)
        if fc_layer is None:
            linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise LayerNotFoundError(
                    f"CAM needs a linear classifier after global pooling, and {type(model).__name__} has no "
                    "nn.Linear; pass fc_layer=<the classifier> or use a gradient method such as GradCAM"
                )
            self.fc_name, self.fc = linears[-1]
        else:
            self.fc_name, self.fc = resolve_layers(model, fc_layer)[0]
            if not isinstance(self.fc, nn.Linear):
                raise InputTypeError(
                    f"fc_layer must be an nn.Linear (the classifier after global pooling); "
                    f"{self.fc_name!r} is a {type(self.fc).__name__}"
                )

    def pooled_features(self, ctx: LayerContext) -> torch.Tensor:
        """``F`` (the activations or their ReLU) such that ``fc(mean_ij F) == outputs``; raises otherwise."""
        if ctx.raw_activations.dim() != 4:
            raise LayerOutputError(
                f"CAM needs a CNN that ends in global average pooling + a linear layer; target layer {ctx.name!r} "
                f"returns tokens of shape {tuple(ctx.raw_activations.shape)} (a vision transformer, whose head reads "
                "a class token, not pooled maps). Use a gradient method such as GradCAM on transformers"
            )
        acts = ctx.activations
        weight = self.fc.weight.detach().float()
        bias = None if self.fc.bias is None else self.fc.bias.detach().float()
        if weight.shape[1] != acts.shape[1]:
            raise LayerOutputError(
                f"CAM: the linear layer {self.fc_name!r} takes {weight.shape[1]} features but target layer "
                f"{ctx.name!r} has {acts.shape[1]} channels; expected the layer whose output is globally "
                f"average-pooled into {self.fc_name!r} (e.g. 'layer4' for a ResNet, 'features' for an "
                "EfficientNet), or fc_layer=<that classifier>"
            )
        out = ctx.outputs.float()
        if out.dim() != 2 or out.shape[1] != weight.shape[0]:
            raise LayerOutputError(
                f"CAM: the model's output has shape {tuple(out.shape)}, but the linear layer {self.fc_name!r} "
                f"gives {weight.shape[0]} scores; CAM needs a classifier whose last layer is {self.fc_name!r}"
            )
        rows = torch.isfinite(out).all(dim=1)  # images whose output can be checked (allow_nonfinite input)
        if not bool(rows.any()):
            return acts
        out = out[rows]
        tol = (1e-2 if ctx.outputs.dtype in (torch.float16, torch.bfloat16) else 1e-4) * max(1.0, float(out.abs().max()))
        worst = float("inf")
        for feats in (acts, pp.relu(acts)):
            diff = float((F.linear(feats[rows].mean(dim=(2, 3)), weight, bias) - out).abs().max())
            if diff <= tol:
                return feats
            worst = min(worst, diff)
        raise LayerOutputError(
            f"CAM needs a network that ends in global average pooling + a linear layer: {self.fc_name!r} applied to "
            f"the spatial mean of {ctx.name!r} does not reproduce the model's output (max difference {worst:.3g}). "
            "Something other than pooling sits between them (a vision transformer's class token, a norm, "
            "more linear layers), or the target layer is not the one pooled into the classifier. "
            "Expected the layer pooled into the classifier; or use a gradient method such as GradCAM, which needs no such head."
        )

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str | None:
        if any(isinstance(m, nn.Linear) for m in model.modules()):
            return None
        return f"CAM weights channels with a linear classifier's rows and {type(model).__name__} has no nn.Linear"

    def layer_map(self, ctx: LayerContext, eigen_smooth: bool) -> torch.Tensor:
        feats = self.pooled_features(ctx)
        for t in ctx.targets:
            if not isinstance(t, ClassifierOutputTarget):
                raise TargetError(
                    "CAM weights channels with the classifier's row for a class, so each target must be a "
                    f"ClassifierOutputTarget(class index); got {type(t).__name__}. Use a gradient method "
                    "(GradCAM) for other targets"
                )
        cats = torch.tensor([t.category for t in ctx.targets], device=feats.device)  # type: ignore[attr-defined]
        weights = self.fc.weight.detach().float()[cats % self.fc.weight.shape[0]]  # (N, C)
        weighted = weights[:, :, None, None] * feats
        return pp.eigen_projection(weighted) if eigen_smooth else weighted.sum(dim=1)
