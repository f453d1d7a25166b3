"""``pytorch_grad_cam.refine_cam``."""

from typing import Any

import torch

from ._wrap import compat_class
from .grad_cam_plusplus import GradCAMPlusPlus

_Base = compat_class("refinecam", "RefineCAM")


class RefineCAM(_Base):  # type: ignore[misc, valid-type]
    """pytorch-grad-cam's ``RefineCAM(model, target_layers, reshape_transform=None, base_method=GradCAMPlusPlus, **kwargs)``."""

    def __init__(self, model: torch.nn.Module, target_layers: Any = None, reshape_transform: Any = None,
                 base_method: Any = GradCAMPlusPlus, **kwargs: Any) -> None:
        super().__init__(model, target_layers, reshape_transform, base_method=base_method, **kwargs)
