"""``pytorch_grad_cam.metrics.arcc``: Complexity, Coherency and their combination with ROAD
(Poppi et al., "Revisiting the evaluation of class activation mapping for explainability",
CVPR-W 2021, arXiv:2104.10252)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .road import ROADCombined

__all__ = ["batch_pearson_coherency", "Complexity", "Coherency", "ARCC"]


def batch_pearson_coherency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair ``a[i]``, ``b[i]`` (flattened) -> ``(N,)``."""
    x = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    y = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    dof = x.shape[1] - 1
    cov = (x * y).sum(axis=1) / dof
    return cov / (np.sqrt((x**2).sum(axis=1) / dof) * np.sqrt((y**2).sum(axis=1) / dof) + 1e-8)


class Complexity:
    """Mean absolute map value (L1 norm per pixel): 0 for an empty map, 1 for an all-ones map; lower is better."""

    def __call__(self, grayscale_cams: np.ndarray) -> np.ndarray:
        flat = np.asarray(grayscale_cams).reshape(len(grayscale_cams), -1)
        return np.abs(flat).sum(axis=1) / flat.shape[1]


class Coherency:
    """``(1 + rho) / 2`` of the map and the map recomputed on the input multiplied by it; higher is better."""

    def __call__(
        self, input_tensor: torch.Tensor, grayscale_cams: np.ndarray, targets: Sequence[Any], model: torch.nn.Module, base_method: Any
    ) -> np.ndarray:
        maps = torch.from_numpy(np.asarray(grayscale_cams, dtype=np.float32)).unsqueeze(1).to(input_tensor.device)
        again = base_method(input_tensor=input_tensor * maps, targets=targets)
        return (batch_pearson_coherency(again, grayscale_cams) + 1) / 2


class ARCC:
    """Harmonic mean of Coherency, 1 - Complexity and the clipped ROAD combined score ``clip(2 * road, 0, 1)``."""

    def __init__(self, base_method: Any, road_percentiles: Sequence[float] = (20, 40, 60, 80)) -> None:
        self.complexity = Complexity()
        self.coherency = Coherency()
        self.road = ROADCombined(percentiles=road_percentiles)
        self.base_method = base_method

    def __call__(self, input_tensor: torch.Tensor, grayscale_cams: np.ndarray, targets: Sequence[Any], model: torch.nn.Module) -> np.ndarray:
        complexity = self.complexity(grayscale_cams)
        coherency = self.coherency(input_tensor, grayscale_cams, targets, model, self.base_method)
        road = np.clip(self.road(input_tensor, grayscale_cams, targets, model) * 2, 0, 1)
        return 3 / (1 / (coherency + 1e-8) + 1 / ((1 - complexity) + 1e-8) + 1 / (road + 1e-8))
