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

from .errors import TargetError, TargetIndexError

__all__ = [
    "Target",
    "ClassifierOutputTarget",
    "ClassifierOutputSoftmaxTarget",
    "SoftmaxTarget",
    "BinaryClassifierOutputTarget",
    "SemanticSegmentationTarget",
    "RawScoresOutputTarget",
    "score_targets",
    "targets_from_categories",
]

TargetFn = Callable[[torch.Tensor], torch.Tensor]


class Target:
    """Base class: per-image ``__call__`` plus a batched ``score_batch`` over same-class targets."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def score_batch(cls, targets: Sequence["Target"], outputs: torch.Tensor) -> torch.Tensor:
        """Scores ``(N,)`` for ``outputs`` ``(N, ...)``; the default calls each target."""
        return torch.stack([t(o) for t, o in zip(targets, outputs)]).reshape(len(targets))


def _check_category(category: int, num_classes: int) -> None:
    if not -num_classes <= category < num_classes:
        raise TargetIndexError(
            f"class index {category} is out of range for a model with {num_classes} outputs; "
            f"expected 0 <= index < {num_classes}"
        )


class ClassifierOutputTarget(Target):
    """Score = the model's output (logit) for ``category``. Grad-CAM's choice: the pre-softmax score."""

    def __init__(self, category: int) -> None:
        if isinstance(category, (np.integer,)):
            category = int(category)
        if isinstance(category, torch.Tensor) and category.numel() == 1:
            category = int(category.item())
        if not isinstance(category, int) or isinstance(category, bool):
            raise TargetError(f"ClassifierOutputTarget expects an integer class index; got {category!r}")
        self.category = category

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

    ``output`` is ``(K, H, W)``; ``mask`` is ``(H, W)`` (bool or float weights, numpy or torch).
    """

    def __init__(self, category: int, mask: Any) -> None:
        self.category = int(category)
        self.mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        _check_category(self.category, output.shape[0])
        mask = self.mask.to(device=output.device, dtype=output.dtype)
        if mask.shape != output.shape[1:]:
            raise TargetError(
                f"segmentation mask has shape {tuple(mask.shape)} but the output map is "
                f"{tuple(output.shape[1:])}; resize the mask to the model's output size"
            )
        return (output[self.category] * mask).sum()


def targets_from_categories(categories: Any, outputs: torch.Tensor) -> list[TargetFn]:
    """Turn the older ``target_category`` argument into targets.

    ``None``: each image's top class; an ``int``: that class for every image; a list: one per image.
    """
    n = outputs.shape[0]
    if categories is None:
        if outputs.dim() != 2:
            raise TargetError(
                "target_category=None picks each image's top class, which needs a (N, num_classes) "
                f"output; the model returned shape {tuple(outputs.shape)}: pass targets=[...] instead"
            )
        return [ClassifierOutputTarget(int(c)) for c in outputs.argmax(dim=1).tolist()]
    if isinstance(categories, (int, np.integer)) and not isinstance(categories, bool):
        return [ClassifierOutputTarget(int(categories)) for _ in range(n)]
    if isinstance(categories, torch.Tensor):
        categories = categories.reshape(-1).tolist()
    if isinstance(categories, np.ndarray):
        categories = categories.reshape(-1).tolist()
    if isinstance(categories, Sequence) and not isinstance(categories, str):
        if len(categories) != n:
            raise TargetError(
                f"target_category has {len(categories)} entries but the batch has {n} images; "
                "pass one class per image, a single int for all, or None for each image's top class"
            )
        return [ClassifierOutputTarget(int(c)) for c in categories]
    raise TargetError(f"target_category must be None, an int or a list of ints; got {type(categories).__name__}")


def score_targets(targets: Sequence[TargetFn], outputs: torch.Tensor) -> torch.Tensor:
    """Scores ``(N,)`` of ``targets`` (one per image) on ``outputs`` (``(N, ...)``), batched where possible."""
    if len(targets) != outputs.shape[0]:
        raise TargetError(
            f"got {len(targets)} targets for a batch of {outputs.shape[0]} images; pass one target per "
            "image (e.g. [ClassifierOutputTarget(281)] * len(batch)) or targets=None for the top class"
        )
    kinds = {type(t) for t in targets}
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if isinstance(targets[0], Target):
            return kind.score_batch(targets, outputs)  # type: ignore[arg-type]
    for t in targets:
        if not callable(t):
            raise TargetError(f"each target must be callable as target(output_i); got {type(t).__name__}")
    scores = [torch.as_tensor(t(o)) for t, o in zip(targets, outputs)]
    for s in scores:
        if s.numel() != 1:
            raise TargetError(f"a target must return one scalar score per image; got shape {tuple(s.shape)}")
    return torch.stack([s.reshape(()) for s in scores])
