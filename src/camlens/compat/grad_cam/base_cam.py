"""``pytorch_grad_cam.base_cam``: subclass :class:`BaseCAM` and implement ``get_cam_weights`` as
in pytorch-grad-cam; camlens runs the capture, the gradients and the post-processing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camlens.methods.base import GradientCAM, LayerContext
from ._wrap import CompatCall

__all__ = ["BaseCAM"]


class BaseCAM(CompatCall, GradientCAM):
    """pytorch-grad-cam's extension point. A subclass implements::

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray

    with ``activations`` and ``grads`` numpy ``(N, C, h, w)`` (after ``reshape_transform``),
    returning per-channel weights ``(N, C)`` or element-wise weights ``(N, C, h, w)``; the map is
    ``sum_k w_k * A_k`` (first principal component with ``eigen_smooth``), then ReLU, upsampling and
    normalisation as for every camlens method. Set ``uses_gradients = False`` on the subclass when
    the weights need no gradients (``grads`` is then ``None``).
    """

    uses_gradients = True

    def __init__(self, model: torch.nn.Module, target_layers: Any = None, reshape_transform: Any = None, **kwargs: Any):
        uses = kwargs.pop("uses_gradients", None)
        super().__init__(model, target_layers, reshape_transform, **kwargs)
        if uses is not None:
            self.uses_gradients = bool(uses)

    def get_cam_weights(
        self, input_tensor: torch.Tensor, target_layer: torch.nn.Module, targets: list, activations: np.ndarray, grads: Any
    ) -> np.ndarray:
        raise NotImplementedError("subclasses of BaseCAM implement get_cam_weights(...)")

    def cam_weights(self, ctx: LayerContext) -> torch.Tensor:
        acts = ctx.activations.detach().cpu().numpy()
        grads = None if ctx.gradients is None else ctx.gradients.detach().cpu().numpy()
        w = np.asarray(self.get_cam_weights(ctx.input_tensor, ctx.module, ctx.targets, acts, grads), dtype=np.float32)
        w = torch.as_tensor(w, device=ctx.activations.device)
        return w[:, :, None, None] if w.dim() == 2 else w
