"""``pytorch_grad_cam.metrics.cam_mult_image``: the image multiplied by its map.

pytorch-grad-cam's definitions, kept here (camlens's own :mod:`camlens.metrics` reports the
percentages of the papers instead): ``CamMultImageConfidenceChange`` is the target score on
``x * cam`` minus the score on ``x``; ``DropInConfidence`` is ``max(0, -change)``;
``IncreaseInConfidence`` is ``1.0`` where the change is positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .perturbation_confidence import PerturbationConfidenceMetric

__all__ = ["multiply_tensor_with_cam", "CamMultImageConfidenceChange", "DropInConfidence", "IncreaseInConfidence"]


def multiply_tensor_with_cam(input_tensor: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """The (normalised) input times its map."""
    return input_tensor * cam


class CamMultImageConfidenceChange(PerturbationConfidenceMetric):
    def __init__(self) -> None:
        super().__init__(multiply_tensor_with_cam)


class DropInConfidence(CamMultImageConfidenceChange):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = super().__call__(*args, **kwargs)
        if isinstance(out, tuple):
            return np.maximum(-out[0], 0), out[1]
        return np.maximum(-out, 0)


class IncreaseInConfidence(CamMultImageConfidenceChange):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = super().__call__(*args, **kwargs)
        if isinstance(out, tuple):
            return np.float32(out[0] > 0), out[1]
        return np.float32(out > 0)
