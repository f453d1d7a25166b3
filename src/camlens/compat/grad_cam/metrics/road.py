"""``pytorch_grad_cam.metrics.road``: ROAD (Rong et al., ICML 2022) with pytorch-grad-cam's
classes and definitions (score differences; ``ROADCombined`` = (LeRF - MoRF) / 2 averaged over
percentiles). The imputation is camlens's :func:`camlens.metrics.road.noisy_linear_impute`,
batched over the images of a call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camlens.metrics.road import noisy_linear_impute
from .perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)

__all__ = [
    "NoisyLinearImputer",
    "ROADMostRelevantFirst",
    "ROADLeastRelevantFirst",
    "ROADMostRelevantFirstAverage",
    "ROADLeastRelevantFirstAverage",
    "ROADCombined",
]

_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class NoisyLinearImputer:
    """``imputer(img (C, H, W), mask (H, W))``: pixels where ``mask == 0`` take the weighted mean of
    their 8 neighbours (1/6 direct, 1/12 diagonal), plus Gaussian noise of std ``noise``."""

    def __init__(self, noise: float = 0.01, weighting: Any = None, seed: int | None = None) -> None:
        self.noise = float(noise)
        self.seed = seed

    def batch(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return noisy_linear_impute(images, keep == 0, noise=self.noise, seed=self.seed)

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.batch(img[None], mask[None])[0]


class ROADMostRelevantFirst(PerturbationConfidenceMetric):
    def __init__(self, percentile: float = 80) -> None:
        super().__init__(RemoveMostRelevantFirst(percentile, NoisyLinearImputer()))


class ROADLeastRelevantFirst(PerturbationConfidenceMetric):
    def __init__(self, percentile: float = 20) -> None:
        super().__init__(RemoveLeastRelevantFirst(percentile, NoisyLinearImputer()))


class ROADMostRelevantFirstAverage(AveragerAcrossThresholds):
    def __init__(self, percentiles: Sequence[float] = _PERCENTILES) -> None:
        super().__init__(ROADMostRelevantFirst, percentiles)


class ROADLeastRelevantFirstAverage(AveragerAcrossThresholds):
    def __init__(self, percentiles: Sequence[float] = _PERCENTILES) -> None:
        super().__init__(ROADLeastRelevantFirst, percentiles)


class ROADCombined:
    """``(LeRF - MoRF) / 2``, each averaged over ``percentiles``: higher is better."""

    def __init__(self, percentiles: Sequence[float] = _PERCENTILES) -> None:
        self.percentiles = list(percentiles)
        self.morf_averager = ROADMostRelevantFirstAverage(percentiles)
        self.lerf_averager = ROADLeastRelevantFirstAverage(percentiles)

    def __call__(self, input_tensor: torch.Tensor, cams: np.ndarray, targets: Sequence[Any], model: torch.nn.Module) -> np.ndarray:
        lerf = self.lerf_averager(input_tensor, cams, targets, model)
        morf = self.morf_averager(input_tensor, cams, targets, model)
        return (lerf - morf) / 2
