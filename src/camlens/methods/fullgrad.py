"""FullGrad (Srinivas & Fleuret, NeurIPS 2019, arXiv:1905.00780): input gradients plus every bias-gradient."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from .. import postprocess as pp
from ..engine import CamLensWarning, Capture
from ..errors import ArgumentError, LayerNotFoundError, LayerOutputError
from ..registry import register
from .base import BaseCAM, check_argument

__all__ = ["FullGrad"]


def _bias_layers(model: nn.Module) -> list[nn.Module]:
    """Every ``Conv2d`` with a bias and every ``BatchNorm2d`` with running statistics, in model order."""
    found = []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.bias is not None:  # Conv1d/2d/3d
            found.append(m)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None:
            found.append(m)
    return found


def effective_bias(layer: nn.Module) -> torch.Tensor:
    """The per-channel bias a layer adds: a conv's ``b``; BatchNorm's (eval mode)
    ``beta - running_mean * gamma / sqrt(running_var + eps)``."""
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        scale = torch.rsqrt(layer.running_var.float() + layer.eps)
        gamma = layer.weight.detach().float() if layer.weight is not None else torch.ones_like(scale)
        beta = layer.bias.detach().float() if layer.bias is not None else torch.zeros_like(scale)
        return beta - layer.running_mean.float() * gamma * scale
    return layer.bias.detach().float()  # type: ignore[union-attr]


def _channel_normalised_sum(t: torch.Tensor) -> torch.Tensor:
    """``sum_c minmax(|t_c|)`` over the channels of ``(N, C, *spatial)``, each channel scaled on its own."""
    n, c, *spatial = t.shape
    return pp.minmax_normalize(t.abs().reshape(n * c, *spatial)).reshape(n, c, *spatial).sum(dim=1)


@register("fullgrad", "full-grad")
class FullGrad(BaseCAM):
    """FullGrad: the input-gradient term plus the bias-gradient of every conv and norm layer.

    ``S(x) = psi(|x * dS/dx|) + sum_l sum_c psi(|b_lc * dS/dz_lc|)`` where ``z_l`` is the output of
    layer ``l`` (every ``Conv2d`` with a bias and every ``BatchNorm2d``, whose eval-mode bias is
    ``beta - mean * gamma / sqrt(var + eps)``), ``b_lc`` its bias for channel ``c``, and ``psi``
    the paper's post-processing of each channel: absolute value, min-max scaling to ``[0, 1]``,
    bilinear upsampling to the input size. The sum is min-max normalised once more.

    Cost: one forward with autograd from the input and one backward to the input and the layer
    outputs (no parameter gradient). Bilinear upsampling is linear, so each layer's channels are
    normalised and summed at layer resolution and upsampled once (the same numbers as upsampling
    every channel). ``target_layers`` are not needed (and ignored, with a warning); a layer that
    never runs or that the score does not depend on (Inception's auxiliary head) is skipped.
    ``eigen_smooth`` projects the stack of the per-layer maps on its first principal component.
    No ``reshape_transform``: the maps are the input's and the conv layers' own.

    Matches pytorch-grad-cam 1.5.7's FullGrad (which normalises per channel as here; the paper's
    official code scales each layer's channels jointly).

    Example::

        cam = FullGrad(model)
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)] * len(x))
    """

    paper = "Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, NeurIPS 2019"
    summary = "|input x gradient| plus |bias x gradient| of every conv/BatchNorm layer, each channel normalised"
    formula = r"L^c = \operatorname{minmax}\Big(\psi\Big(x \odot \frac{\partial y^c}{\partial x}\Big) + \sum_l \sum_k \psi\Big(b_{lk}\, \frac{\partial y^c}{\partial z_{lk}}\Big)\Big),\qquad \psi(v) = \operatorname{Up}\big(\operatorname{minmax}(|v|)\big)"
    cost = "one forward pass with autograd from the input, plus one backward pass to the input and to every conv and BatchNorm output; no parameter gradients"
    apply_relu: ClassVar[bool] = False
    engine_options: ClassVar[dict[str, Any]] = {"input_gradient": True, "optional_layers": True}

    def __init__(
        self,
        model: nn.Module,
        target_layers: Any = None,
        use_cuda: bool | None = None,
        reshape_transform: Any = None,
        **kwargs: Any,
    ) -> None:
        if target_layers not in (None, []) or kwargs.pop("target_layer", None) is not None:
            warnings.warn(
                "FullGrad ignores target_layers: it uses the input and every conv/BatchNorm layer with a bias",
                CamLensWarning,
                stacklevel=2,
            )
        check_argument(type(self).__name__, "reshape_transform", reshape_transform, "callable")
        if reshape_transform is not None:
            raise ArgumentError(
                "FullGrad takes no reshape_transform: its maps are the input's and the conv layers' own "
                "(N, C, h, w); drop reshape_transform"
            )
        if not isinstance(model, nn.Module):
            super().__init__(model)  # raises the usual type error
        layers = _bias_layers(model)
        if not layers:
            raise LayerNotFoundError(
                f"FullGrad found no Conv2d with a bias and no BatchNorm2d in {type(model).__name__}; its map would "
                "be input x gradient alone. Use a layer-based method such as GradCAM"
            )
        super().__init__(model, layers, use_cuda, None, **kwargs)

    @property
    def target_layer_names(self) -> list[str]:
        """One map for the whole network: ``["input + <n> bias layers"]`` (``bias_layer_names`` lists them)."""
        return [f"input + {len(self.layers)} bias layers"]

    @property
    def bias_layer_names(self) -> list[str]:
        """Dotted names of the layers whose bias-gradients are summed."""
        return [n for n, _ in self.layers]

    def _layer_maps(self, cap: Capture, x: torch.Tensor, eigen_smooth: bool) -> list[torch.Tensor]:
        size = tuple(x.shape[2:])
        assert cap.input_gradient is not None and cap.gradients is not None  # the engine's contract
        if cap.input_gradient is None or cap.gradients is None:
            raise LayerOutputError("FullGrad needs the engine's input and layer gradients")  # pragma: no cover
        terms = [_channel_normalised_sum(cap.input_gradient.float() * x.float())]
        for (_, layer), grad in zip(self.layers, cap.gradients):
            if grad is None:  # the layer did not run, or the score does not depend on it
                continue
            bias = effective_bias(layer).to(grad.device)
            term = pp.upsample(_channel_normalised_sum(grad.float() * bias.reshape(-1, *([1] * (grad.dim() - 2)))), size)
            if eigen_smooth:
                terms.append(term)
            else:
                terms[0] = terms[0] + term  # a running sum keeps one input-sized map in memory
        if eigen_smooth:
            return [pp.eigen_projection(torch.stack(terms, dim=1))]
        return terms

    def _finish(self, raw_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return pp.minmax_normalize(raw_maps[0])
