"""``pytorch_grad_cam.finer_cam``."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._wrap import compat_class
from .grad_cam import GradCAM

_Base = compat_class("finercam", "FinerCAM")


class FinerCAM(_Base):  # type: ignore[misc, valid-type]
    """pytorch-grad-cam's ``FinerCAM(model, target_layers, reshape_transform=None, base_method=GradCAM)``;
    ``cam(input_tensor, targets=None, eigen_smooth=False, alpha=1, comparison_categories=None,
    target_idx=None)`` -> ``(N, H, W)``. ``comparison_categories`` are similarity ranks (1 = the most
    similar other class), ``[1, 2, 3]`` by default; ``target_idx`` fixes the explained class."""

    def __init__(self, model: torch.nn.Module, target_layers: Any = None, reshape_transform: Any = None,
                 base_method: Any = GradCAM, **kwargs: Any) -> None:
        super().__init__(model, target_layers, reshape_transform, base_method=base_method, **kwargs)

    def __call__(  # type: ignore[override]
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Any] | None = None,
        eigen_smooth: bool = False,
        alpha: float = 1,
        comparison_categories: Sequence[int] | None = None,
        target_idx: int | None = None,
    ) -> np.ndarray:
        alpha0, ranks0 = self.alpha, self.comparison_categories
        self.alpha = float(alpha)
        self.comparison_categories = tuple(int(r) for r in (comparison_categories or (1, 2, 3)))
        try:
            if target_idx is not None and targets is None:
                return self.explain(input_tensor, target_category=int(target_idx), eigen_smooth=eigen_smooth).numpy()
            return self.explain(input_tensor, targets, eigen_smooth=eigen_smooth).numpy()
        finally:
            self.alpha, self.comparison_categories = alpha0, ranks0

    forward = __call__
