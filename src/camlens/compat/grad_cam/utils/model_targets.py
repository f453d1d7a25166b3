"""``pytorch_grad_cam.utils.model_targets``: camlens's targets under pytorch-grad-cam's names, plus
the two that exist only there (``SoftmaxOutputTarget``, ``FasterRCNNBoxScoreTarget``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from camlens.errors import TargetError
from camlens.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
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


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of boxes ``(A, 4)`` and ``(B, 4)`` in ``(x1, y1, x2, y2)`` -> ``(A, B)``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=torch.finfo(inter.dtype).tiny)


class FasterRCNNBoxScoreTarget:
    """Score of a detector's output against reference detections (torchvision's per-image dict
    with ``"boxes"``, ``"labels"``, ``"scores"``).

    For each reference box ``r`` with label ``l``: the detection ``d`` of highest IoU with ``r``
    counts if ``IoU(r, d) > iou_threshold`` and ``label(d) == l``, adding ``IoU(r, d) + score(d)``;
    the target is the sum (0 when nothing matches). Differentiable through the box coordinates and
    scores.
    """

    def __init__(self, labels: Sequence[int], bounding_boxes: Any, iou_threshold: float = 0.5) -> None:
        self.labels = [int(v) for v in labels]
        self.bounding_boxes = torch.as_tensor(bounding_boxes, dtype=torch.float32).reshape(-1, 4)
        if len(self.labels) != self.bounding_boxes.shape[0]:
            raise TargetError(
                f"FasterRCNNBoxScoreTarget got {len(self.labels)} labels for {self.bounding_boxes.shape[0]} boxes; "
                "pass one label per (x1, y1, x2, y2) box"
            )
        self.iou_threshold = float(iou_threshold)

    def __call__(self, model_outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(model_outputs, Mapping) or not {"boxes", "labels", "scores"} <= set(model_outputs):
            raise TargetError(
                "FasterRCNNBoxScoreTarget expects one image's detections: a dict with 'boxes', 'labels' and 'scores'; "
                f"got {type(model_outputs).__name__}"
            )
        boxes = model_outputs["boxes"]
        total = torch.zeros((), device=boxes.device, dtype=boxes.dtype)
        if boxes.shape[0] == 0:
            return total
        ious = box_iou(self.bounding_boxes.to(boxes), boxes)  # (refs, detections)
        best = ious.argmax(dim=1)
        for ref, label in enumerate(self.labels):
            d = int(best[ref])
            if float(ious[ref, d].detach()) > self.iou_threshold and int(model_outputs["labels"][d]) == label:
                total = total + ious[ref, d] + model_outputs["scores"][d]
        return total
