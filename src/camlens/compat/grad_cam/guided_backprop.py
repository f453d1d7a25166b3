"""``pytorch_grad_cam.guided_backprop``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camlens.guided_backprop import GuidedBackprop

__all__ = ["GuidedBackpropReLUModel"]


class GuidedBackpropReLUModel:
    """pytorch-grad-cam's ``GuidedBackpropReLUModel(model, device=None)``:
    ``gb_model(input_img, target_category=None)`` returns the guided gradients of the FIRST image as
    float32 ``(H, W, C)``, ready for ``deprocess_image(cam_mask[..., None] * gb)``.

    On camlens's :class:`camlens.GuidedBackprop`: no ReLU module is swapped (a torch function mode
    guides every ReLU, also functional ones), the model's train/eval flags and ``.grad`` are left as
    found. For the whole batch use :class:`camlens.GuidedBackprop` (``(N, H, W, C)``).
    """

    def __init__(self, model: torch.nn.Module, device: Any = None) -> None:
        if device is not None:
            model = model.to(torch.device(device))
        self.model = model
        self._gb = GuidedBackprop(model)

    def forward(self, input_img: torch.Tensor) -> Any:
        return self.model(input_img)

    def __call__(self, input_img: torch.Tensor, target_category: int | None = None) -> np.ndarray:
        first = input_img[:1]
        return self._gb(first, target_category=target_category)[0]
