"""Confidence when the model sees only the highlighted region: Average Drop, Increase in Confidence.

Chattopadhyay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
Convolutional Networks", WACV 2018, Sec. 5.1. The *explanation map* keeps each pixel in proportion
to its saliency, ``E = L^c * I`` (map ``L^c`` in ``[0, 1]`` times image ``I``). With ``Y_i`` the
model's score for class ``c`` on the full image ``i`` and ``O_i`` its score on ``E_i``:

* Average Drop ``AD = 100/N * sum_i max(0, Y_i - O_i) / Y_i`` (lower is better);
* Increase in Confidence ``IC = 100/N * sum_i 1[Y_i < O_i]`` (higher is better);
* the per-image confidence change ``O_i - Y_i`` (pytorch-grad-cam's "CAM multiply image"
  metric; higher is better).

Scores are softmax probabilities by default (the paper's "confidence"); ``score="logit"`` reads the
raw output instead, where ``Y <= 0`` makes the Average Drop of that image undefined (NaN).

*Which zero?* ``E = L * I`` blacks out unsalient pixels. If the model's input is normalised
(``(x - mean) / std``), multiplying the normalised tensor would instead fade pixels to the dataset
mean colour. Pass the normalisation's ``mean`` and ``std`` to multiply in pixel space, as the paper
does; without them the tensor is multiplied as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..engine import OutputAdapter
from ..errors import ArgumentError
from ._common import as_images, as_maps, class_scores, forward, resolve_classes
from .base import Metric
from ..hooks import eval_mode

__all__ = [
    "ConfidenceResult",
    "explanation_map",
    "confidence_scores",
    "average_drop",
    "increase_in_confidence",
    "confidence_change",
    "AverageDrop",
    "IncreaseInConfidence",
    "ConfidenceChange",
]


@dataclass
class ConfidenceResult:
    """Scores of the target class on the full images and on the explanation maps."""

    full: torch.Tensor
    """``Y``: score on the full image ``(N,)``."""
    explained: torch.Tensor
    """``O``: score on the explanation map ``E = cam * image`` ``(N,)``."""
    classes: torch.Tensor
    """The scored class of each image ``(N,)``."""

    @property
    def average_drop(self) -> torch.Tensor:
        """Per-image ``100 * max(0, Y - O) / Y`` (its mean is the Average Drop)."""
        y = self.full
        drop = (y - self.explained).clamp_min(0) / y
        return torch.where(y > 0, 100.0 * drop, torch.full_like(y, float("nan")))

    @property
    def increase(self) -> torch.Tensor:
        """Per-image ``100 * 1[O > Y]`` (its mean is the Increase in Confidence)."""
        return 100.0 * (self.explained > self.full).float()

    @property
    def change(self) -> torch.Tensor:
        """Per-image ``O - Y``."""
        return self.explained - self.full


def _stats(values: Sequence[float] | None, c: int, like: torch.Tensor, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(c)
    if t.numel() != c:
        raise ArgumentError(f"{name} must have one value or one per channel ({c}); got {t.numel()}")
    return t[None, :, None, None]


def explanation_map(
    input_tensor: torch.Tensor,
    cams: Any,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """``E = cam * image``, batched ``(N, C, H, W)``; in pixel space when ``mean``/``std`` are given.

    Maps must lie in ``[0, 1]`` (CAMs from camlens do).
    """
    x = as_images(input_tensor, metric="camlens.metrics.explanation_map")
    maps = as_maps(cams, x)
    if bool((maps < -1e-6).any()) or bool((maps > 1 + 1e-6).any()):
        raise ArgumentError(
            f"cams must lie in [0, 1] for an explanation map; got values in "
            f"[{maps.min().item():.3g}, {maps.max().item():.3g}] (normalise with camlens.postprocess.minmax_normalize)"
        )
    m = _stats(mean, x.shape[1], x, "mean")
    s = _stats(std, x.shape[1], x, "std")
    if (m is None) != (s is None):
        raise ArgumentError("pass both mean and std (the input's normalisation), or neither")
    weights = maps[:, None].to(x.dtype)
    if m is None:
        return weights * x
    return (weights * (x * s + m) - m) / s


def confidence_scores(
    model: nn.Module,
    input_tensor: torch.Tensor,
    cams: Any,
    targets: Any = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    score: str = "softmax",
    batch_size: int = 32,
    output_adapter: OutputAdapter | None = None,
) -> ConfidenceResult:
    """Scores ``Y`` (full image) and ``O`` (explanation map) of each image's target class.

    ``targets``: class indices (or ``ClassifierOutputTarget``s); ``None`` = top class on the full image.
    """
    x = as_images(input_tensor, model, metric="camlens.metrics.confidence_scores")
    classes, full = resolve_classes(
        model, x, targets, batch_size=batch_size, output_adapter=output_adapter, score=score
    )
    e = explanation_map(x, cams, mean=mean, std=std)
    outs = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            outs.append(class_scores(forward(model, e[sl], output_adapter), classes[sl], score))
    return ConfidenceResult(full=full, explained=torch.cat(outs), classes=classes)


def average_drop(model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any) -> torch.Tensor:
    """Per-image Average Drop ``100 * max(0, Y - O) / Y`` ``(N,)``; lower is better.

    Keyword arguments as :func:`confidence_scores`. The mean over images is the paper's AD (%).
    """
    return confidence_scores(model, input_tensor, cams, targets, **kwargs).average_drop


def increase_in_confidence(
    model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any
) -> torch.Tensor:
    """Per-image ``100 * 1[O > Y]`` ``(N,)``; its mean is the Increase in Confidence (%), higher is better."""
    return confidence_scores(model, input_tensor, cams, targets, **kwargs).increase


def confidence_change(model: nn.Module, input_tensor: torch.Tensor, cams: Any, targets: Any = None, **kwargs: Any) -> torch.Tensor:
    """Per-image ``O - Y`` (score on ``cam * image`` minus score on the image) ``(N,)``; higher is better."""
    return confidence_scores(model, input_tensor, cams, targets, **kwargs).change


class _ConfidenceMetric(Metric):
    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        score: str = "softmax",
        batch_size: int = 32,
        output_adapter: OutputAdapter | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.options = dict(mean=mean, std=std, score=score, batch_size=batch_size, output_adapter=output_adapter)

    def _result(self, input_tensor: torch.Tensor, cams: Any, targets: Any) -> ConfidenceResult:
        return confidence_scores(self.model, input_tensor, cams, targets, **self.options)


class AverageDrop(_ConfidenceMetric):
    """Average Drop (%) over every batch seen; lower is better. See :mod:`camlens.metrics.confidence`."""

    name = "average_drop"
    higher_is_better = False

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> torch.Tensor:
        return self._result(input_tensor, cams, targets).average_drop


class IncreaseInConfidence(_ConfidenceMetric):
    """Increase in Confidence (%) over every batch seen; higher is better."""

    name = "increase_in_confidence"
    higher_is_better = True

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> torch.Tensor:
        return self._result(input_tensor, cams, targets).increase


class ConfidenceChange(_ConfidenceMetric):
    """Mean confidence change ``O - Y`` when the image is multiplied by its map; higher is better."""

    name = "confidence_change"
    higher_is_better = True

    def per_image(self, input_tensor: torch.Tensor, cams: Any, targets: Any = None) -> torch.Tensor:
        return self._result(input_tensor, cams, targets).change
