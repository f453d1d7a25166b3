"""``pytorch_grad_cam.utils.model_targets``: camlens's targets under pytorch-grad-cam's names, plus
the two that exist only there (``SoftmaxOutputTarget``, ``FasterRCNNBoxScoreTarget``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from camlens.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    BoxScoreTarget,
    SemanticSegmentationTarget,
)

__all__ = [
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputReST",
    "FinerWeightedTarget",
    "BinaryClassifierOutputTarget",
    "SoftmaxOutputTarget",
    "RawScoresOutputTarget",
    "SemanticSegmentationTarget",
    "FasterRCNNBoxScoreTarget",
]


class SoftmaxOutputTarget:
    """The whole softmax vector of one image's output (used by metrics that compare outputs)."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model_output, dim=-1)


class FasterRCNNBoxScoreTarget(BoxScoreTarget):
    """pytorch-grad-cam's name and arguments for :class:`camlens.targets.BoxScoreTarget` with its
    matching rule (``match="any"``): for each reference box ``r`` with label ``l`` the detection
    ``d`` of highest IoU with ``r`` counts if ``IoU(r, d) > iou_threshold`` and ``label(d) == l``,
    adding ``IoU(r, d) + score(d)``; the target is the sum (0 when nothing matches)."""

    def __init__(self, labels: Sequence[int], bounding_boxes: Any, iou_threshold: float = 0.5) -> None:
        super().__init__(labels, bounding_boxes, iou_threshold, match="any")
        self.bounding_boxes = self.boxes
