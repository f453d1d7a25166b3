"""Targets: small callables that turn one image's model output into the scalar score to explain.

A target is any callable ``target(output_i) -> scalar tensor`` where ``output_i`` is the model's
(adapted) output for one image, e.g. a ``(num_classes,)`` logit vector or a ``(K, H, W)``
segmentation map. The classes below also offer a batched ``score_batch`` used by the engine when
every target of a call is of the same class, so one call costs one tensor op, not a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .errors import TargetError, TargetIndexError, TargetTypeError

__all__ = [
    "Target",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "SoftmaxTarget",
    "BinaryClassifierOutputTarget",
    "SemanticSegmentationTarget",
    "RawScoresOutputTarget",
    "BoxScoreTarget",
    "DetectionTarget",
    "box_iou",
    "SimilarityToConceptTarget",
    "DifferenceFromConceptTarget",
    "concept_embedding",
    "detection_targets_default",
    "score_targets",
    "targets_from_categories",
    "class_index",
]

TargetFn = Callable[[torch.Tensor], torch.Tensor]


class Target:
    """Base class: per-image ``__call__`` plus a batched ``score_batch`` over same-class targets."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def score_batch(cls, targets: Sequence["Target"], outputs: torch.Tensor) -> torch.Tensor:
        """Scores ``(N,)`` for ``outputs`` ``(N, ...)``; the default calls each target."""
        return torch.stack([_checked_score(t, o, i, False) for i, (t, o) in enumerate(zip(targets, outputs))])


def class_index(value: Any, what: str = "class index") -> int:
    """``value`` as a Python int class index; ints, numpy integers and one-element integer tensors
    or arrays are accepted. Floats and bools are refused rather than rounded (``2.7`` is not a class)."""
    if isinstance(value, np.generic) and not isinstance(value, np.integer):
        value = value.item()  # numpy float or bool scalar -> Python, for a plain message
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        if not (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool):
            return int(value.item())
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        if np.issubdtype(value.dtype, np.integer):
            return int(value.item())
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        raise TargetError(
            f"{what} must be an integer class index; got the bool {value!r}: pass the class number "
            f"({int(value)}) if that is what you mean"
        )
    if isinstance(value, (int, np.integer)):
        return int(value)
    hint = ""
    if isinstance(value, (float, np.floating)) and np.isfinite(value):
        hint = f" (it is not rounded for you: pass {int(round(float(value)))} if that is the class you mean)"
    raise TargetError(f"{what} must be an integer class index; got {value!r} ({type(value).__name__}){hint}")


def _check_category(category: int, num_classes: int) -> None:
    if not -num_classes <= category < num_classes:
        raise TargetIndexError(
            f"class index {category} is out of range for a model with {num_classes} outputs; "
            f"expected 0 <= index < {num_classes} (or a negative index counting from the end, "
            f"down to -{num_classes})"
        )


class ClassifierOutputTarget(Target):
    """Score = the model's output (logit) for ``category``. Grad-CAM's choice: the pre-softmax score."""

    def __init__(self, category: int) -> None:
        # A negative index counts from the end, as in Python indexing.
        self.category = class_index(category, f"{type(self).__name__}'s category")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.category == self.category  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.category))

    def _scores(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        scores = self._scores(output.unsqueeze(0)).squeeze(0) if output.dim() == 1 else self._scores(output)
        _check_category(self.category, scores.shape[-1])
        return scores[..., self.category]

    @classmethod
    def score_batch(cls, targets: Sequence[Target], outputs: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 2:
            return super().score_batch(targets, outputs)
        num_classes = outputs.shape[1]
        cats = [t.category for t in targets]  # type: ignore[attr-defined]
        for c in set(cats):
            _check_category(c, num_classes)
        index = torch.tensor(cats, device=outputs.device, dtype=torch.long) % num_classes
        scores = targets[0]._scores(outputs)  # type: ignore[attr-defined]
        return scores.gather(1, index[:, None]).squeeze(1)


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """Score = softmax probability of ``category`` (softmax over the last axis)."""

    def _scores(self, output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(output, dim=-1)


SoftmaxTarget = ClassifierOutputSoftmaxTarget


class BinaryClassifierOutputTarget(Target):
    """For a single-logit binary classifier: score = logit if ``category == 1`` else ``-logit``."""

    def __init__(self, category: int) -> None:
        category = class_index(category, "BinaryClassifierOutputTarget's category")
        if category not in (0, 1):
            raise TargetIndexError(f"BinaryClassifierOutputTarget expects category 0 or 1; got {category!r}")
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if self.category == 1 else -1.0
        return sign * output.reshape(-1)[0]


class RawScoresOutputTarget(Target):
    """Score = sum of every output value (for models whose output is already the score)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.sum()


class SemanticSegmentationTarget(Target):
    """Score = sum of class ``category``'s output over the pixels where ``mask`` is set.

    ``output`` is ``(K, H, W)`` (logits at any resolution, e.g. SegFormer's 1/4 of the input);
    ``mask`` is ``(H, W)`` (bool or float weights, numpy or torch) at the output's resolution, or
    ``None``: "all pixels of class ``category``", the pixels where ``argmax_k output[k] == category``
    (taken from the output being scored; a class predicted nowhere scores 0).

    Example::

        logits = torch.randn(21, 8, 8)  # one image's (classes, H, W) output
        score = SemanticSegmentationTarget(15)(logits)  # sum of class 15's logits where it wins
        # maps = GradCAM(segmenter)(images, targets=[SemanticSegmentationTarget(15)])
    """

    def __init__(self, category: int, mask: Any = None) -> None:
        self.category = class_index(category, "SemanticSegmentationTarget's category")
        if mask is None:
            self.mask = None
        else:
            self.mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.category}{'' if self.mask is None else ', mask'})"

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 3:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise TargetError(
                f"SemanticSegmentationTarget expects a (classes, H, W) map per image; got {got}: for a "
                "dict output pass output_adapter=lambda out: out['out']"
            )
        _check_category(self.category, output.shape[0])
        if self.mask is None:
            mask = (output.detach().argmax(dim=0) == self.category % output.shape[0]).to(output.dtype)
            return (output[self.category] * mask).sum()
        mask = self.mask.to(device=output.device, dtype=output.dtype)
        if mask.shape != output.shape[1:]:
            raise TargetError(
                f"segmentation mask has shape {tuple(mask.shape)} but the output map is "
                f"{tuple(output.shape[1:])}; resize the mask to the model's output size"
            )
        return (output[self.category] * mask).sum()


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(A, B)`` of boxes ``(A, 4)`` and ``(B, 4)`` in ``(x1, y1, x2, y2)`` pixels.

    ``IoU = area(a & b) / (area(a) + area(b) - area(a & b))``; differentiable in both arguments.
    Where the union is empty (degenerate zero-area boxes, which untrained detectors produce) the
    IoU is 1 for identical boxes and 0 otherwise, not NaN.
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    same = (a[:, None, :] == b[None, :, :]).all(dim=2).to(inter.dtype)
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), same)


def _detections(output: Any, who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(output, dict) or not all(k in output for k in ("boxes", "labels", "scores")):
        got = sorted(output.keys()) if isinstance(output, dict) else type(output).__name__
        raise TargetError(
            f"{who} expects one detection dict per image with 'boxes' (K, 4), 'labels' (K,) and 'scores' (K,) "
            f"(torchvision detectors in eval mode); got {got}: pass an output_adapter that returns a list of "
            "such dicts, one per image"
        )
    return output["boxes"], output["labels"], output["scores"]


class BoxScoreTarget(Target):
    """Detection target: how well the model still finds the reference boxes.

    ``score = sum_j [IoU(b_j, d*) + s(d*)]`` over the reference boxes ``b_j`` (label ``l_j``),
    where ``d*`` is the detection with label ``l_j`` that overlaps ``b_j`` most, counted only when
    ``IoU(b_j, d*) >= iou_threshold``; ``s(d*)`` is its score. Both terms are differentiable in the
    model's box regression and class scores (the box-score target of Grad-CAM for detectors, e.g.
    Jacob Gildenblat's tutorial; the paper Grad-CAM, Selvaraju et al. ICCV 2017, explains one score).
    A reference box with no match adds 0 (a zero that still carries the graph, so the map is blank,
    not an error). ``output`` is one image's detection dict (``boxes``, ``labels``, ``scores``).

    ``match="any"`` is pytorch-grad-cam's rule instead: ``d*`` is the detection of highest IoU
    whatever its label, counted only when its label is ``l_j`` and ``IoU > iou_threshold``
    (strictly); a box then loses its match when a detection of another class overlaps it more.

    Example::

        target = BoxScoreTarget(labels=[3], boxes=[[10, 12, 40, 50]])
        detections = {"boxes": torch.tensor([[10.0, 12, 40, 50]]), "labels": torch.tensor([3]),
                      "scores": torch.tensor([0.9])}
        assert abs(float(target(detections)) - 1.9) < 1e-6  # IoU 1 + score 0.9
        # maps = GradCAM(detector)(images, targets=[target])
    """

    def __init__(self, labels: Any, boxes: Any, iou_threshold: float = 0.5, *, match: str = "label") -> None:
        labels_t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        boxes_t = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes)
        boxes_t = boxes_t.detach().float().reshape(-1, 4) if boxes_t.numel() else boxes_t.detach().float().reshape(0, 4)
        labels_t = labels_t.detach().reshape(-1).long()
        if labels_t.numel() != boxes_t.shape[0]:
            raise TargetError(
                f"BoxScoreTarget needs one label per box; got {labels_t.numel()} labels and {boxes_t.shape[0]} boxes"
            )
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise TargetError(f"BoxScoreTarget's iou_threshold must be in [0, 1]; got {iou_threshold!r}")
        if match not in ("label", "any"):
            raise TargetError(f"BoxScoreTarget's match must be 'label' or 'any'; got {match!r}")
        self.labels, self.boxes, self.iou_threshold = labels_t, boxes_t, float(iou_threshold)
        self.match = match

    def __repr__(self) -> str:
        return f"BoxScoreTarget({len(self.labels)} box(es), iou_threshold={self.iou_threshold})"

    def __call__(self, output: Any) -> torch.Tensor:
        boxes, labels, scores = _detections(output, "BoxScoreTarget")
        total = scores.sum() * 0  # keeps the graph (and the dtype) even when nothing matches
        if boxes.numel() == 0 or self.boxes.numel() == 0:
            return total
        ref = self.boxes.to(device=boxes.device, dtype=boxes.dtype)
        ious = box_iou(ref, boxes)  # (R, D)
        same = self.labels.to(labels.device)[:, None] == labels[None, :].long()
        plain = ious.detach()
        best = (plain if self.match == "any" else torch.where(same, plain, torch.full_like(plain, -1.0))).argmax(dim=1)
        for j in range(ref.shape[0]):
            d = int(best[j])
            iou = float(plain[j, d])
            if bool(same[j, d]) and (iou > self.iou_threshold if self.match == "any" else iou >= self.iou_threshold):
                total = total + ious[j, d] + scores[d]
        return total


class DetectionTarget(BoxScoreTarget):
    """A :class:`BoxScoreTarget` built from the model's own detections (explain what it found).

    ``DetectionTarget.from_outputs(outputs, score_threshold)`` gives one target per image covering
    that image's detections scoring at least ``score_threshold``; :meth:`per_detection` one target
    per detection of one image (for one map per box: run the image repeated once per target).
    """

    @classmethod
    def from_output(cls, output: Any, score_threshold: float = 0.5, iou_threshold: float = 0.5) -> "DetectionTarget":
        """One image's detections with ``score >= score_threshold``."""
        boxes, labels, scores = _detections(output, "DetectionTarget")
        keep = scores.detach() >= score_threshold
        return cls(labels.detach()[keep].cpu(), boxes.detach()[keep].cpu(), iou_threshold)

    @classmethod
    def from_outputs(
        cls, outputs: Sequence[Any], score_threshold: float = 0.5, iou_threshold: float = 0.5
    ) -> list["DetectionTarget"]:
        """One target per image (see :meth:`from_output`)."""
        return [cls.from_output(o, score_threshold, iou_threshold) for o in outputs]

    @classmethod
    def per_detection(
        cls, output: Any, score_threshold: float = 0.5, iou_threshold: float = 0.5
    ) -> list["DetectionTarget"]:
        """One target per detection of one image with ``score >= score_threshold``.

        Example (one map per box)::

            out = model(x[:1])[0]
            targets = DetectionTarget.per_detection(out, 0.5)
            maps = cam(x[:1].expand(len(targets), -1, -1, -1), targets=targets)
        """
        boxes, labels, scores = _detections(output, "DetectionTarget")
        keep = (scores.detach() >= score_threshold).nonzero().flatten().tolist()
        return [cls(labels.detach()[i : i + 1].cpu(), boxes.detach()[i : i + 1].cpu(), iou_threshold) for i in keep]


DEFAULT_SCORE_THRESHOLD = 0.5


def detection_targets_default(outputs: Sequence[Any]) -> list[TargetFn]:
    """``targets=None`` for detectors: each image's detections scoring at least 0.5, or its single
    highest-scoring detection when none does (as ``None`` means the top class for a classifier);
    an image without any detection gets an empty target (score 0, a blank map)."""
    targets: list[TargetFn] = []
    for output in outputs:
        boxes, labels, scores = _detections(output, "targets=None")
        threshold = DEFAULT_SCORE_THRESHOLD
        if scores.numel() and float(scores.max()) < threshold:
            threshold = float(scores.max())
        targets.append(DetectionTarget.from_output(output, threshold))
    return targets


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


class SimilarityToConceptTarget(Target):
    """Embedding target: ``score = cos(e, c) = e.c / (|e| |c|)`` with ``e`` the image's embedding
    (model output, flattened) and ``c`` the concept embedding (e.g. from
    :func:`camlens.targets.concept_embedding`, a text embedding, or another image's embedding:
    "why does A match B"). Explaining it shows what makes the image similar to the concept.

    Example::

        concept = concept_embedding(model, x)  # example images showing the concept
        maps = GradCAM(model)(x, targets=[SimilarityToConceptTarget(concept)] * len(x))
    """

    def __init__(self, concept: Any) -> None:
        c = torch.as_tensor(np.asarray(concept) if not isinstance(concept, torch.Tensor) else concept)
        c = c.detach().float().reshape(-1)
        if c.numel() == 0 or not bool(torch.isfinite(c).all()) or float(c.norm()) == 0:
            raise TargetError(f"{type(self).__name__} needs a finite, non-zero concept embedding; got {c.tolist()[:8]}")
        self.concept = c

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.concept.numel()})"

    def _cosine(self, output: torch.Tensor) -> torch.Tensor:
        e = output.reshape(-1)
        if e.numel() != self.concept.numel():
            raise TargetError(
                f"{type(self).__name__}: the image embedding has {e.numel()} values but the concept has "
                f"{self.concept.numel()}; build the concept with the same model (and output_adapter)"
            )
        return (_unit(e) * _unit(self.concept.to(device=e.device, dtype=e.dtype))).sum()

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self._cosine(output)


class DifferenceFromConceptTarget(SimilarityToConceptTarget):
    """``score = 1 - cos(e, c)``: explains what makes the image *differ* from the concept."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return 1 - self._cosine(output)


def concept_embedding(model: Any, images: torch.Tensor, output_adapter: Any = None) -> torch.Tensor:
    """The concept embedding of example images: ``c = mean_i e_i / |e_i|`` (unit embeddings averaged),
    ``(D,)``, computed in eval mode without autograd (the model's flags are restored).

    Example::

        concept = concept_embedding(model, x)  # (D,) from a batch of example images
    """
    from .engine import forward_outputs, prepare_images
    from .hooks import eval_mode

    x = prepare_images(images, model, "images")
    with eval_mode(model):
        out = forward_outputs(model, x, output_adapter)
    if not isinstance(out, torch.Tensor):
        raise TargetError(f"concept_embedding needs a model returning (N, D) embeddings; got {type(out).__name__}")
    e = out.float().flatten(1)
    return (e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).mean(dim=0)


def targets_from_categories(categories: Any, outputs: Any) -> list[TargetFn]:
    """Turn the older ``target_category`` argument into targets.

    ``None``: each image's top class; an ``int``: that class for every image; a list: one per image.
    Classes are integers with ``0 <= class < num_classes``: floats and bools are refused, not
    rounded, and a negative class is an error here (use ``ClassifierOutputTarget(-1)`` for
    Python-style indexing from the end).
    """
    if not isinstance(outputs, torch.Tensor):
        if categories is None:
            return detection_targets_default(outputs)
        raise TargetError(
            "target_category picks classes of a (N, num_classes) output; this model returns per-image "
            "outputs (detections): pass targets=[BoxScoreTarget(labels, boxes)] or targets=None"
        )
    n = outputs.shape[0]
    if outputs.dim() == 4 and (categories is None or isinstance(categories, (int, np.integer))):
        # Semantic segmentation (N, K, H, W): explain the pixels of one class. None: each image's
        # most frequent predicted class.
        if categories is None:
            cats = [int(torch.bincount(o.argmax(dim=0).flatten(), minlength=o.shape[0]).argmax()) for o in outputs]
        else:
            c = class_index(categories, "target_category")
            _check_category(c, outputs.shape[1])
            cats = [c] * n
        return [SemanticSegmentationTarget(c) for c in cats]
    if categories is None:
        if outputs.dim() != 2:
            raise TargetError(
                "target_category=None picks each image's top class, which needs a (N, num_classes) "
                f"output; the model returned shape {tuple(outputs.shape)}: pass targets=[...] instead"
            )
        return [ClassifierOutputTarget(int(c)) for c in outputs.argmax(dim=1).tolist()]
    num_classes = outputs.shape[1] if outputs.dim() == 2 else None

    def one(value: Any, what: str) -> ClassifierOutputTarget:
        c = class_index(value, what)
        if c < 0 or (num_classes is not None and c >= num_classes):
            limit = f"0 <= class < {num_classes}" if num_classes is not None else "0 <= class"
            hint = f" (the last class is {num_classes - 1})" if c < 0 and num_classes else ""
            raise TargetIndexError(
                f"{what}: class index {c} is out of range for a model with {num_classes} outputs; "
                f"expected {limit}{hint}. "
                "For Python-style negative indexing pass targets=[ClassifierOutputTarget(-1)]"
            )
        return ClassifierOutputTarget(c)

    if isinstance(categories, (torch.Tensor, np.ndarray)) and categories.ndim == 0:
        categories = categories.item() if isinstance(categories, torch.Tensor) else categories[()]
    if isinstance(categories, (int, np.integer, bool, np.bool_, float, np.floating)):
        return [one(categories, "target_category")] * n
    if isinstance(categories, (torch.Tensor, np.ndarray)):
        if categories.ndim != 1:
            raise TargetError(
                f"target_category must be one class per image (1-D); got shape {tuple(categories.shape)}"
            )
        categories = list(categories)
    if isinstance(categories, Sequence) and not isinstance(categories, str):
        if len(categories) != n:
            raise TargetError(
                f"target_category has {len(categories)} entries but the batch has {n} images; "
                "pass one class per image, a single int for all, or None for each image's top class"
            )
        return [one(c, f"target_category[{i}]") for i, c in enumerate(categories)]
    raise TargetError(
        f"target_category must be None, an int or a list of ints; got {type(categories).__name__}"
    )


def _describe(target: Any) -> str:
    name = getattr(target, "__name__", None)
    return f"{name} (a function)" if name and callable(target) and not isinstance(target, Target) else repr(target)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_score(target: Any, output: torch.Tensor, index: int, differentiable: bool) -> torch.Tensor:
    """``target(output)`` as a 0-d floating tensor, or a clear error naming the target and what it returned.

    ``differentiable``: the score must carry a gradient back to ``output`` (gradient-based methods);
    a Python number or a detached tensor would silently give blank maps, so it is refused.
    """
    value = target(output)
    fix = "return a scalar tensor computed from the output, e.g. lambda out: out[3]"
    output = _reference_tensor(output)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TargetError(
                f"target {_describe(target)} returned a tensor of shape {tuple(value.shape)} for image {index}; "
                f"a target must return one scalar score per image: {fix} or out.sum()"
            )
        if differentiable and output.requires_grad and not value.requires_grad:
            raise TargetError(
                f"target {_describe(target)} returned a tensor that is detached from the model output "
                f"(image {index}), so no gradient reaches the target layer and the map would be blank; "
                "expected the score itself: return it without .detach(), .item(), float() or torch.no_grad()"
            )
        if not (value.is_floating_point() or value.is_complex()):
            value = value.to(output.dtype if output.is_floating_point() else torch.float32)
        return value.reshape(())
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        if differentiable and output.requires_grad:
            raise TargetError(
                f"target {_describe(target)} returned a Python {type(value).__name__} ({value!r}) for image "
                f"{index}; expected a scalar tensor computed from the output, since a plain number carries "
                "no gradient and gradient-based maps would be blank: return out[3], not float(out[3]) or out[3].item()"
            )
        dtype = output.dtype if output.is_floating_point() else torch.float32
        return torch.tensor(float(value), dtype=dtype, device=output.device)
    raise TargetTypeError(
        f"target {_describe(target)} returned {_short(value)} ({type(value).__name__}) for image {index}; "
        f"expected one score per image as a scalar tensor: {fix}"
    )


def _reference_tensor(output: Any) -> torch.Tensor:
    """The tensor whose dtype, device and graph a per-image output stands for (a detection dict's
    ``scores``, else its first tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        values = [output.get("scores")] + list(output.values())
        for v in values:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v
    return torch.zeros(())


def score_targets(targets: Sequence[TargetFn], outputs: Any, *, differentiable: bool = False) -> torch.Tensor:
    """Scores ``(N,)`` of ``targets`` (one per image) on ``outputs`` (``(N, ...)``), batched where possible.

    Each target must return a scalar tensor (a Python number is accepted when ``differentiable``
    is false). With ``differentiable=True`` (gradient-based methods) a score that carries no
    gradient is an error rather than a blank map.
    """
    n = outputs.shape[0] if isinstance(outputs, torch.Tensor) else len(outputs)
    if len(targets) != n:
        raise TargetError(
            f"got {len(targets)} targets for a batch of {n} images; pass one target per "
            "image (e.g. [ClassifierOutputTarget(281)] * len(batch)) or targets=None for the top class"
        )
    for t in targets:
        if not callable(t):
            raise TargetTypeError(
                f"each target must be callable as target(output_i); got {type(t).__name__} {t!r}: "
                "pass e.g. ClassifierOutputTarget(3), or target_category=3 for a class index"
            )
    kinds = {type(t) for t in targets}
    if len(kinds) == 1 and isinstance(targets[0], Target) and isinstance(outputs, torch.Tensor):
        kind = next(iter(kinds))
        if kind.score_batch.__func__ is not Target.score_batch.__func__:  # type: ignore[attr-defined]
            return kind.score_batch(targets, outputs)  # type: ignore[arg-type]
    return torch.stack([_checked_score(t, o, i, differentiable) for i, (t, o) in enumerate(zip(targets, outputs))])


class ClassifierOutputReST(ClassifierOutputTarget):
    """Residual Softmax Target-class score (ReST; Cai, arXiv:2501.06261), the target ShapleyCAM is
    meant to be used with: ``s = y_c - CE(y, c) = y_c + log softmax(y)_c``.

    It keeps the logit's scale and, through the cross-entropy term, the competition with the other
    classes that a pre-softmax score ignores. Example::

        cam = ShapleyCAM(model, "layer4")
        maps = cam(input_tensor=x, targets=[ClassifierOutputReST(281)] * len(x))
    """

    def _scores(self, output: torch.Tensor) -> torch.Tensor:
        return output + torch.log_softmax(output, dim=-1)


class FinerWeightedTarget(Target):
    """Finer-CAM's contrastive score (Zhang et al., CVPR 2025, arXiv:2501.11309).

    ``s = sum_j p_j (y_c - alpha * y_j) / sum_j p_j`` over the comparison classes ``j``, with
    ``p = softmax(y)``: the target logit against its most similar classes, each weighted by its
    probability. ``p_j / sum_j p_j`` is computed as a softmax over the comparison logits alone (the
    same number, with no underflow and no epsilon).

    Args:
        main_category: the class explained; ``None``: the output's top class.
        comparison_categories: explicit class indices to compare with; ``None``: the classes at
            ``ranks`` in the order of similarity ``|y_k - y_c|`` (rank 1 = the most similar other
            class), chosen on the (detached) output the target scores.
        alpha: comparison strength (0 gives back the plain logit).
        ranks: similarity ranks used when ``comparison_categories`` is ``None``; ranks past the
            number of other classes are dropped.

    Example::

        target = FinerWeightedTarget(281, [282, 285], alpha=0.6)   # explicit comparisons
        target = FinerWeightedTarget(281)                          # the three most similar classes
    """

    def __init__(
        self,
        main_category: int | None,
        comparison_categories: Sequence[int] | None = None,
        alpha: float = 1.0,
        *,
        ranks: Sequence[int] = (1, 2, 3),
    ) -> None:
        if main_category is not None and (isinstance(main_category, bool) or not isinstance(main_category, (int, np.integer))):
            raise TargetError(f"FinerWeightedTarget expects an integer class index or None; got {main_category!r}")
        if comparison_categories is not None:
            comparison_categories = [int(c) for c in comparison_categories]
            if not comparison_categories:
                raise TargetError("FinerWeightedTarget needs at least one comparison class; got an empty list")
        ranks = [int(r) for r in ranks]
        if not ranks or min(ranks) < 1:
            raise TargetError(f"ranks must be positive similarity ranks (1 = most similar other class); got {ranks}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TargetError(f"alpha must be a real number; got {alpha!r}")
        self.main_category = None if main_category is None else int(main_category)
        self.comparison_categories = comparison_categories
        self.alpha = float(alpha)
        self.ranks = ranks

    def __repr__(self) -> str:
        comp = self.comparison_categories if self.comparison_categories is not None else f"ranks={self.ranks}"
        return f"FinerWeightedTarget({self.main_category}, {comp}, alpha={self.alpha})"

    def choose(self, output: torch.Tensor) -> tuple[int, list[int]]:
        """``(main class, comparison classes)`` for one image's ``(num_classes,)`` output."""
        if output.dim() != 1:
            raise TargetError(
                f"FinerWeightedTarget needs a (num_classes,) output per image; got shape {tuple(output.shape)}"
            )
        k = output.shape[0]
        main = int(output.argmax()) if self.main_category is None else self.main_category
        _check_category(main, k)
        main %= k
        if self.comparison_categories is not None:
            for c in self.comparison_categories:
                _check_category(c, k)
            return main, [c % k for c in self.comparison_categories]
        dist = (output.detach().float() - output.detach().float()[main]).abs()
        dist[main] = float("inf")
        order = dist.argsort(stable=True).tolist()
        comps = [order[r - 1] for r in self.ranks if r < k]
        if not comps:
            raise TargetError(f"FinerWeightedTarget: a model with {k} output(s) has no other class to compare with")
        return main, comps

    def resolve(self, output: torch.Tensor) -> FinerWeightedTarget:
        """The same target with its classes fixed from ``output`` (e.g. the un-augmented image's)."""
        main, comps = self.choose(output)
        return FinerWeightedTarget(main, comps, self.alpha)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.score_batch([self], output.unsqueeze(0))[0]

    @classmethod
    def score_batch(cls, targets: Sequence[Target], outputs: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 2:
            raise TargetError(
                f"FinerWeightedTarget needs (N, num_classes) outputs; got shape {tuple(outputs.shape)}"
            )
        chosen = [t.choose(o) for t, o in zip(targets, outputs.detach())]  # type: ignore[attr-defined]
        if len({len(c) for _, c in chosen}) != 1:
            return torch.stack([t(o) for t, o in zip(targets, outputs)])
        device = outputs.device
        main = torch.tensor([m for m, _ in chosen], device=device)
        comp = torch.tensor([c for _, c in chosen], device=device)
        alpha = torch.tensor([t.alpha for t in targets], device=device, dtype=outputs.dtype)  # type: ignore[attr-defined]
        y_c = outputs.gather(1, main[:, None])
        y_d = outputs.gather(1, comp)
        weights = torch.softmax(y_d, dim=1)
        return (weights * (y_c - alpha[:, None] * y_d)).sum(dim=1)


__all__ += ["ClassifierOutputReST", "FinerWeightedTarget"]
