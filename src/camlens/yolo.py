"""Ultralytics YOLO detectors: their raw output read as per-image detections, and their layer.

An Ultralytics ``DetectionModel`` (YOLOv3/v5/v6/v8/v9/v10/11/26, built from a yaml or loaded from
weights) returns in eval mode ``(preds, raw)`` where ``preds`` is ``(N, 4 + nc, A)``: per anchor
the box centre ``x, y``, width and height in input pixels, then one sigmoid score per class.
:class:`YOLOOutputAdapter` turns that into the per-image dicts (``boxes`` ``(K, 4)`` as
``x1, y1, x2, y2``, ``labels`` ``(K,)``, ``scores`` ``(K,)``) that camlens's detection targets
read (:class:`camlens.targets.BoxScoreTarget`, ``targets=None``), the format torchvision's
detectors return. An end-to-end head's ``(N, K, 6)`` output (``x1, y1, x2, y2, score, class``;
YOLOv10 / YOLO26 with ``end2end`` on) is read too.

The post-processing follows Ultralytics' own (``ultralytics.utils.nms.non_max_suppression`` with
``multi_label=False``): each anchor's best class, a score threshold, class-aware non-maximum
suppression, at most ``max_detections`` per image. The choice of anchors is made on detached
values; the kept boxes and scores are then gathered from the live output, so a target computed
from them is differentiable in the model's class scores and box regression.

camlens uses this adapter and picks the layer by itself when the model is recognised
(:func:`is_yolo_detector`): nothing here imports ``ultralytics``; the model is recognised by its
structure (a ``model`` Sequential ending in a ``Detect`` / ``v10Detect`` head with ``f``, ``nc``
and ``stride``). Segmentation and pose models (``Segment`` / ``Pose`` heads) are explained through
their detections too: the mask coefficients and keypoints after the class scores are ignored. OBB
(rotated boxes) and open-vocabulary heads are not recognised.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import ArgumentError, DependencyError, ModelOutputError

__all__ = [
    "YOLOOutputAdapter",
    "is_yolo_detector",
    "yolo_detect_head",
    "head_extra_channels",
    "yolo_target_layer",
    "yolo_wrapped_model",
    "output_adapter_for",
]

_HEADS = ("Detect", "v10Detect", "Segment", "Segment26", "Pose", "Pose26")
"""Head classes whose eval output is ``(N, 4 + nc + extra, A)`` boxes, class scores and (Segment:
``nm`` mask coefficients; Pose: ``nk`` keypoint values) extra channels, or end-to-end rows. OBB
(rotated boxes) and the text-conditioned World / YOLOE heads are not matched."""


def head_extra_channels(head: nn.Module) -> int:
    """Channels an Ultralytics head appends after the class scores: mask coefficients (Segment) or
    keypoint values (Pose); 0 for Detect."""
    for name in ("nm", "nk"):
        value = getattr(head, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def yolo_detect_head(model: nn.Module) -> nn.Module | None:
    """The ``Detect`` head of an Ultralytics ``DetectionModel`` (``model.model[-1]``), or ``None``."""
    layers = model._modules.get("model") if isinstance(model, nn.Module) else None
    if not isinstance(layers, nn.Sequential) or len(layers) < 2:
        return None
    head = layers[-1]
    if type(head).__name__ not in _HEADS:
        return None
    f, nc = getattr(head, "f", None), getattr(head, "nc", None)
    if not (isinstance(f, (list, tuple)) and f and all(isinstance(i, int) for i in f)):
        return None
    if not isinstance(nc, int) or nc < 1 or not all(hasattr(m, "f") and hasattr(m, "i") for m in layers):
        return None
    return head


def is_yolo_detector(model: nn.Module) -> bool:
    """``model`` is an Ultralytics YOLO ``DetectionModel`` (recognised by structure, see the module doc)."""
    return yolo_detect_head(model) is not None


def yolo_target_layer(model: nn.Module) -> str | None:
    """Dotted name of the default target layer of a YOLO detector: the deepest layer from which
    *every* scale the ``Detect`` head reads is computed (``None`` if ``model`` is no YOLO detector).

    The choice follows the model's own graph (each Ultralytics layer records its inputs in ``f``).
    In the PAN necks of YOLOv5/v6/v8/v9/v10/11/26 the coarser scales are computed from the finest
    one, so this is the stride-8 (P3) map the head reads (``model.15`` in YOLOv8, ``model.16`` in
    YOLO11): the finest map that every detection, small or large, depends on. A layer read by one
    scale only (``model[-2]``, P5) has zero gradient for the boxes found at the other scales, and
    small objects vanish from its 1/32-resolution map. In YOLOv3, whose neck is top-down only,
    it is the last layer before the scales separate. All scales at once:
    ``target_layers=[model.model[i] for i in model.model[-1].f]`` (maps combined per layer).
    """
    head = yolo_detect_head(model)
    if head is None:
        return None
    layers = model.model  # type: ignore[union-attr]
    depends: dict[int, set[int]] = {}
    for index, module in enumerate(layers):
        sources = [module.f] if isinstance(module.f, int) else list(module.f)
        found: set[int] = set()
        for j in sources:
            j = index + j if j < 0 else j
            if 0 <= j < index:  # -1 of the first layer is the input image
                found |= {j} | depends.get(j, set())
        depends[index] = found
    common = set.intersection(*[depends.get(i, set()) | {i} for i in head.f])
    return f"model.{max(common)}" if common else None


def yolo_wrapped_model(module: Any) -> nn.Module | None:
    """The ``DetectionModel`` inside an ``ultralytics.YOLO`` object (``yolo.model``), else ``None``.

    ``YOLO.__call__`` runs ``predict`` (loading, letterboxing, post-processing into ``Results``);
    given a ``(N, 3, H, W)`` tensor in ``[0, 1]`` it runs ``yolo.model`` on it unchanged, so camlens
    explains ``yolo.model`` on the same tensor."""
    if not isinstance(module, nn.Module) or not type(module).__module__.startswith("ultralytics."):
        return None
    if not any(c.__name__ == "Model" and c.__module__.startswith("ultralytics.") for c in type(module).__mro__):
        return None
    inner = module._modules.get("model")
    return inner if isinstance(inner, nn.Module) else None


def _nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    try:
        from torchvision.ops import batched_nms
    except ImportError:
        raise DependencyError(
            "YOLOOutputAdapter needs torchvision for non-maximum suppression (torchvision.ops.batched_nms); "
            "install it with pip install torchvision (Ultralytics itself depends on it)"
        ) from None
    return batched_nms(boxes.float(), scores.float(), labels, iou)


def _cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    half = b[..., 2:] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], dim=-1)


class YOLOOutputAdapter:
    """Output adapter for Ultralytics YOLO detectors: raw predictions -> one detection dict per image.

    Accepts ``(preds, raw)`` (eval mode), ``preds`` alone (export mode) or a list/tuple starting
    with it, where ``preds`` is either

    * ``(N, 4 + nc, A)``: per anchor ``cx, cy, w, h`` (input pixels) and ``nc`` class scores in
      ``[0, 1]``; read as the detection ``(x1, y1, x2, y2) = (cx - w/2, cy - h/2, cx + w/2, cy + h/2)``
      with label ``c* = argmax_c s_c`` and score ``s_c*``, kept when ``s_c* >= score_threshold``,
      then class-aware NMS at ``iou_threshold`` and the ``max_detections`` best;
    * ``(N, K, 6)`` from an end-to-end head: rows ``x1, y1, x2, y2, score, class``, already
      one per object (only the score threshold applies).

    Returned scores and boxes are slices of the live ``preds`` (differentiable), labels are int64,
    detections sorted by decreasing score.

    Args:
        score_threshold: lowest class score kept. The default 0.05 (torchvision's detectors' too)
            is below Ultralytics' 0.25 for display: a box whose score drops under a perturbation
            (ScoreCAM, AblationCAM) should still count, with its lower score, not vanish.
        iou_threshold: NMS IoU threshold (Ultralytics' default 0.7).
        max_detections: detections kept per image (Ultralytics' default 300).
        num_classes: the model's ``nc`` when known: ``(N, 4 + nc + extra_channels, A)`` is then checked.
        extra_channels: channels after the class scores that are not part of a detection and are
            ignored: ``nm`` mask coefficients of a segmentation head, ``nk`` keypoint values of a pose
            head (0 for detection; set from the head by :meth:`for_model`). Needs ``num_classes``.

    Example::

        from camlens.yolo import YOLOOutputAdapter

        adapter = YOLOOutputAdapter(score_threshold=0.5, iou_threshold=0.5)
        preds = torch.zeros(1, 6, 3)   # 2 classes, 3 anchors; rows: cx, cy, w, h, s0, s1
        preds[0, :4] = torch.tensor([[10.0, 11, 30], [10, 10, 30], [4, 4, 8], [4, 4, 8]])
        preds[0, 4:] = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7]])
        [det] = adapter((preds, {}))
        assert det["labels"].tolist() == [0, 1]   # anchor 1 overlaps anchor 0 (IoU 0.6): suppressed
        assert det["boxes"].tolist() == [[8.0, 8.0, 12.0, 12.0], [26.0, 26.0, 34.0, 34.0]]
        # maps = EigenCAM(yolo_model)(x)   # used automatically for an Ultralytics DetectionModel
    """

    def __init__(
        self,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.7,
        max_detections: int = 300,
        num_classes: int | None = None,
        extra_channels: int = 0,
    ) -> None:
        for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ArgumentError(f"YOLOOutputAdapter: {name} must be a number in [0, 1]; got {value!r}")
        for name, value in (("max_detections", max_detections), ("num_classes", num_classes)):
            if value is None and name == "num_classes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(f"YOLOOutputAdapter: {name} must be a positive int; got {value!r}")
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = max_detections
        self.num_classes = num_classes
        if isinstance(extra_channels, bool) or not isinstance(extra_channels, int) or extra_channels < 0:
            raise ArgumentError(f"YOLOOutputAdapter: extra_channels must be an int >= 0; got {extra_channels!r}")
        if extra_channels and num_classes is None:
            raise ArgumentError(
                "YOLOOutputAdapter: extra_channels needs num_classes (where the class scores end); pass both"
            )
        self.extra_channels = extra_channels

    @classmethod
    def for_model(cls, model: nn.Module, **options: Any) -> "YOLOOutputAdapter":
        """The adapter for one YOLO detector, checking its ``nc`` classes."""
        head = yolo_detect_head(model)
        if head is None:
            raise ModelOutputError(
                f"YOLOOutputAdapter.for_model expects an Ultralytics DetectionModel with a Detect head; got "
                f"{type(model).__name__}: pass yolo.model for an ultralytics.YOLO object"
            )
        options.setdefault("num_classes", int(head.nc))
        options.setdefault("extra_channels", head_extra_channels(head))
        return cls(**options)

    def __repr__(self) -> str:
        return (
            f"YOLOOutputAdapter(score_threshold={self.score_threshold}, iou_threshold={self.iou_threshold}, "
            f"max_detections={self.max_detections}, num_classes={self.num_classes}, "
            f"extra_channels={self.extra_channels})"
        )

    def _preds(self, output: Any) -> torch.Tensor:
        preds = output
        while isinstance(preds, (tuple, list)) and preds:  # Segment: ((preds, proto), raw)
            preds = preds[0]
        if isinstance(preds, torch.Tensor) and preds.dim() == 3 and preds.is_floating_point():
            return preds
        got = (
            f"a tensor of shape {tuple(preds.shape)}" if isinstance(preds, torch.Tensor)
            else f"{type(output).__name__}" + (f" starting with a {type(preds).__name__}" if preds is not output else "")
        )
        raise ModelOutputError(
            "YOLOOutputAdapter expects an Ultralytics detector's output: (preds, ...) or preds, with preds "
            f"(N, 4 + num_classes [+ extra_channels], anchors) or end-to-end (N, K, 6 [+ extra_channels]); got "
            f"{got}. For another output pass output_adapter=<callable returning one dict with 'boxes', "
            "'labels', 'scores' per image>"
        )

    def __call__(self, output: Any) -> list[dict[str, torch.Tensor]]:
        preds = self._preds(output)
        nc, extra = self.num_classes, self.extra_channels
        if preds.shape[-1] == 6 + extra and (nc is None or preds.shape[1] != 4 + nc + extra):
            return [self._end_to_end(p[:, :6]) for p in preds]
        if preds.shape[1] < 5 or (nc is not None and preds.shape[1] != 4 + nc + extra):
            want = "4 + num_classes (at least 5)" if nc is None else f"4 + {nc} + {extra} = {4 + nc + extra}"
            raise ModelOutputError(
                f"YOLOOutputAdapter: the detector's predictions have shape {tuple(preds.shape)}; expected "
                f"(N, {want}, anchors) or end-to-end rows (N, K, {6 + extra}). A segmentation or pose head adds "
                "channels after the class scores: pass num_classes=<nc> and extra_channels=<nm or nk> "
                "(YOLOOutputAdapter.for_model(model) reads both); OBB's rotated boxes are not read"
            )
        classes = preds[:, 4 : preds.shape[1] - extra]  # mask coefficients / keypoints after them are ignored
        boxes = _cxcywh_to_xyxy(preds[:, :4].transpose(1, 2))  # (N, A, 4)
        scores, labels = classes.max(dim=1)  # (N, A): each anchor's best class
        return [self._select(b, s, lab) for b, s, lab in zip(boxes, scores, labels)]

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        index = (scores.detach() >= self.score_threshold).nonzero().flatten()
        if index.numel():
            keep = _nms(boxes.detach()[index], scores.detach()[index], labels[index], self.iou_threshold)
            index = index[keep[: self.max_detections]]
        return {"boxes": boxes[index], "labels": labels[index].long(), "scores": scores[index]}

    def _end_to_end(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = rows[:, 4]
        index = (scores.detach() >= self.score_threshold).nonzero().flatten()
        index = index[scores.detach()[index].argsort(descending=True, stable=True)][: self.max_detections]
        return {"boxes": rows[index, :4], "labels": rows[index, 5].detach().round().long(), "scores": scores[index]}


def output_adapter_for(model: nn.Module) -> YOLOOutputAdapter | None:
    """The output adapter camlens uses for ``model`` when none is given: a :class:`YOLOOutputAdapter`
    for an Ultralytics YOLO detector, else ``None`` (the default adapter applies)."""
    return YOLOOutputAdapter.for_model(model) if is_yolo_detector(model) else None
