import pytest
import torch

from camlens.errors import InputShapeError, TargetError
from camlens.metrics import Metric
from camlens.metrics._common import (
    as_classes,
    as_maps,
    check_percentiles,
    class_scores,
    rank_order,
    ranks_of,
    trapezoid_auc,
)


def test_trapezoid_auc_hand_computed():
    curve = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]])
    # x = 0, 0.5, 1: (1 + 0.5)/2 * 0.5 + (0.5 + 0)/2 * 0.5 = 0.5
    assert torch.allclose(trapezoid_auc(curve), torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="at least 2 points"):
        trapezoid_auc(torch.ones(1, 1))


def test_rank_order_sorts_and_breaks_ties_randomly():
    maps = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    assert rank_order(maps).tolist() == [[1, 2, 3, 0]]
    assert rank_order(maps, descending=False).tolist() == [[0, 3, 2, 1]]
    flat = torch.zeros(1, 8, 8)
    by_index = rank_order(flat, seed=None)
    assert by_index.tolist() == [list(range(64))]
    shuffled = rank_order(flat, seed=0)
    assert sorted(shuffled[0].tolist()) == list(range(64)) and shuffled.tolist() != by_index.tolist()
    assert torch.equal(rank_order(flat, seed=0), shuffled)  # reproducible
    order = rank_order(torch.rand(3, 5, 5))
    ranks = ranks_of(order)
    assert torch.equal(ranks.gather(1, order), torch.arange(25).expand(3, 25))


def test_class_scores_and_targets():
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    cls = torch.tensor([0, 0])
    assert torch.allclose(class_scores(out, cls, "softmax"), torch.softmax(out, 1)[:, 0])
    assert class_scores(out, cls, "logit").tolist() == [2.0, 0.0]
    assert class_scores(out, cls, "correct").tolist() == [1.0, 0.0]
    with pytest.raises(TargetError, match="out of range"):
        class_scores(out, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="score must be one of"):
        class_scores(out, cls, "prob")
    assert as_classes(None, 2, torch.device("cpu")) is None
    assert as_classes(3, 2, torch.device("cpu")).tolist() == [3, 3]
    with pytest.raises(TargetError, match="got 3 targets for a batch of 2"):
        as_classes([1, 2, 3], 2, torch.device("cpu"))


def test_as_maps_checks_shape():
    x = torch.zeros(2, 3, 4, 4)
    assert as_maps(torch.zeros(2, 1, 4, 4), x).shape == (2, 4, 4)
    with pytest.raises(InputShapeError, match=r"expected \(2, 4, 4\)"):
        as_maps(torch.zeros(2, 5, 5), x)
    with pytest.raises(ValueError, match="percent values"):
        check_percentiles([0.5, 120])


class _Count(Metric):
    higher_is_better = True

    def per_image(self, values):
        return values


def test_metric_accumulates_over_batches():
    m = _Count()
    with pytest.raises(Exception, match="before any update"):
        m.compute()
    m.update(torch.tensor([1.0, 2.0]))
    m.update(torch.tensor([3.0, float("nan")]))
    assert m.values.numel() == 4
    assert m.compute().item() == pytest.approx(2.0)  # NaN (undefined) left out
    m.reset()
    assert m.values.numel() == 0
