"""Targets: scores by hand, batched path equals the per-image path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlens.errors import TargetError, TargetIndexError
from camlens.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    score_targets,
    targets_from_categories,
)


def test_classifier_scores_batched_equals_single():
    out = torch.randn(3, 5)
    t = [ClassifierOutputTarget(c) for c in (4, 0, -1)]
    assert torch.equal(score_targets(t, out), torch.stack([t[i](out[i]) for i in range(3)]))
    assert torch.equal(score_targets(t, out), torch.stack([out[0, 4], out[1, 0], out[2, 4]]))


def test_softmax_target():
    out = torch.tensor([[1.0, 2.0, 3.0]])
    p = np.exp([1.0, 2.0, 3.0])
    assert score_targets([ClassifierOutputSoftmaxTarget(2)], out).item() == pytest.approx(p[2] / p.sum())
    assert ClassifierOutputSoftmaxTarget(2)(out[0]).item() == pytest.approx(p[2] / p.sum())


def test_binary_and_raw_targets():
    assert BinaryClassifierOutputTarget(1)(torch.tensor([2.5])).item() == 2.5
    assert BinaryClassifierOutputTarget(0)(torch.tensor([2.5])).item() == -2.5
    assert RawScoresOutputTarget()(torch.tensor([1.0, 2.0])).item() == 3.0
    with pytest.raises(TargetIndexError):
        BinaryClassifierOutputTarget(2)


def test_segmentation_target():
    out = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3)
    mask = np.array([[1, 0, 0], [0, 0, 1]])
    assert SemanticSegmentationTarget(1, mask)(out).item() == 6.0 + 11.0
    with pytest.raises(TargetError, match="mask has shape"):
        SemanticSegmentationTarget(1, np.ones((3, 3)))(out)


def test_targets_from_categories():
    out = torch.tensor([[0.0, 3.0], [5.0, 1.0]])
    assert [t.category for t in targets_from_categories(None, out)] == [1, 0]
    assert [t.category for t in targets_from_categories(np.int64(1), out)] == [1, 1]
    assert [t.category for t in targets_from_categories(torch.tensor([0, 1]), out)] == [0, 1]
    with pytest.raises(TargetError, match="targets=\\[...\\]"):
        targets_from_categories(None, torch.zeros(2, 3, 4))
    # (N, K, H, W) segmentation maps: the pixels of each image's most frequent class (tests/test_tasks_segmentation.py)
    assert [type(t).__name__ for t in targets_from_categories(None, torch.zeros(2, 3, 4, 4))] == [
        "SemanticSegmentationTarget"
    ] * 2


def test_classifier_target_rejects_non_integers():
    with pytest.raises(TargetError, match="integer class index"):
        ClassifierOutputTarget(1.5)
    assert ClassifierOutputTarget(torch.tensor(3)).category == 3
