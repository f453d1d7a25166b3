"""``pytorch_grad_cam.metrics.perturbation_confidence``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from camlens.engine import default_output_adapter
from camlens.errors import ArgumentError, InputShapeError
from camlens.hooks import eval_mode

__all__ = ["PerturbationConfidenceMetric", "RemoveMostRelevantFirst", "RemoveLeastRelevantFirst", "AveragerAcrossThresholds"]


def target_scores(model: torch.nn.Module, x: torch.Tensor, targets: Sequence[Callable[[Any], Any]]) -> np.ndarray:
    """``targets[i](output_i)`` for each image, as float32 numpy (no autograd, eval mode)."""
    if len(targets) != x.shape[0]:
        raise InputShapeError(f"got {len(targets)} targets for {x.shape[0]} images; pass one target per image")
    with torch.no_grad(), eval_mode(model):
        out = default_output_adapter(model(x))
    return np.float32([t(o).detach().float().cpu().numpy() for t, o in zip(targets, out)])


class PerturbationConfidenceMetric:
    """``metric(input_tensor, cams, targets, model, return_visualization=False, return_diff=True)``:
    the target score on ``perturbation(image, cam)`` minus (``return_diff``) the score on the image.
    ``perturbation`` takes one image ``(C, H, W)`` and its map ``(H, W)`` as tensors."""

    def __init__(self, perturbation: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.perturbation = perturbation

    def perturb(self, input_tensor: torch.Tensor, cams: np.ndarray) -> torch.Tensor:
        maps = torch.as_tensor(np.asarray(cams, dtype=np.float32))
        if maps.dim() != 3 or maps.shape[0] != input_tensor.shape[0] or maps.shape[1:] != input_tensor.shape[-2:]:
            raise InputShapeError(
                f"cams must be (N, H, W) matching input_tensor {tuple(input_tensor.shape)}; got {tuple(maps.shape)}"
            )
        batch = getattr(self.perturbation, "batch", None)
        if batch is not None:  # the ROAD removers perturb a whole batch at once
            return batch(input_tensor, maps.to(input_tensor.device))
        return torch.stack([self.perturbation(img, m.to(img.device)) for img, m in zip(input_tensor, maps)])

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray,
        targets: Sequence[Callable[[Any], Any]],
        model: torch.nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> Any:
        perturbed = self.perturb(input_tensor, cams)
        result = target_scores(model, perturbed, targets)
        if return_diff:
            result = result - target_scores(model, input_tensor, targets)
        return (result, perturbed) if return_visualization else result


def _check_percentile(percentile: Any) -> None:
    if percentile != "auto" and not (isinstance(percentile, (int, float)) and 0 <= percentile <= 100):
        raise ArgumentError(f"percentile must be a number in [0, 100] or 'auto'; got {percentile!r}")


def _otsu(values: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold of ``values`` in ``[0, 1]`` on 256 levels (as OpenCV's THRESH_OTSU on uint8)."""
    levels = (values.clamp(0, 1) * 255).to(torch.uint8).flatten().long()
    hist = torch.bincount(levels, minlength=256).double()
    p = hist / hist.sum()
    omega = p.cumsum(0)
    mu = (p * torch.arange(256, dtype=torch.float64)).cumsum(0)
    between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega)).clamp(min=1e-12)
    return between.argmax().to(torch.float32) / 255.0


class RemoveMostRelevantFirst:
    """Remove (impute) the pixels whose map value is at or above the ``percentile``-th percentile
    (``"auto"``: Otsu's threshold), using ``imputer(image, keep_mask)``."""

    def __init__(self, percentile: Any, imputer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        _check_percentile(percentile)
        self.percentile = percentile
        self.imputer = imputer

    def keep_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if self.percentile == "auto":
            return (mask.float() <= _otsu(mask)).float()
        threshold = np.percentile(mask.detach().float().cpu().numpy(), self.percentile)
        return (mask.float() < float(threshold)).float()

    def __call__(self, input_tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.imputer(input_tensor, self.keep_mask(mask).to(input_tensor.device))

    def batch(self, input_tensor: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        keep = torch.stack([self.keep_mask(m) for m in masks]).to(input_tensor.device)
        many = getattr(self.imputer, "batch", None)
        if many is not None:
            return many(input_tensor, keep)
        return torch.stack([self.imputer(img, k) for img, k in zip(input_tensor, keep)])


class RemoveLeastRelevantFirst(RemoveMostRelevantFirst):
    """Remove the pixels of lowest map value first (the map is inverted, ``1 - mask``)."""

    def keep_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return super().keep_mask(1 - mask)


class AveragerAcrossThresholds:
    """Mean over ``percentiles`` of ``imputer(percentile)(input_tensor, cams, targets, model)``."""

    def __init__(self, imputer: Callable[[Any], Any], percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90)) -> None:
        self.imputer = imputer
        self.percentiles = list(percentiles)

    def __call__(self, input_tensor: torch.Tensor, cams: np.ndarray, targets: Sequence[Any], model: torch.nn.Module) -> np.ndarray:
        scores = [self.imputer(p)(input_tensor, cams, targets, model) for p in self.percentiles]
        return np.mean(np.float32(scores), axis=0)
