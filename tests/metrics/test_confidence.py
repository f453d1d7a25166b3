import pytest
import torch

from camlens.metrics import (
    AverageDrop,
    IncreaseInConfidence,
    ConfidenceChange,
    average_drop,
    confidence_change,
    confidence_scores,
    explanation_map,
    increase_in_confidence,
)


def _naive(model, x, cams, cls):
    """Per-image loop: Y on the image, O on cam * image, softmax of class ``cls[i]``."""
    ad, ic, ch = [], [], []
    with torch.no_grad():
        for i in range(x.shape[0]):
            y = torch.softmax(model(x[i : i + 1]), 1)[0, cls[i]].item()
            o = torch.softmax(model(cams[i] * x[i : i + 1]), 1)[0, cls[i]].item()
            ad.append(100 * max(0.0, y - o) / y)
            ic.append(100.0 * (o > y))
            ch.append(o - y)
    return torch.tensor(ad), torch.tensor(ic), torch.tensor(ch)


def test_matches_naive_loop(region_setup):
    model, x, perfect, _, random = region_setup
    for cams in (perfect, random):
        cams = cams.clamp(0, 1)
        res = confidence_scores(model, x, cams, batch_size=4)
        ad, ic, ch = _naive(model, x, cams, res.classes)
        assert torch.allclose(res.average_drop, ad, atol=1e-4)
        assert torch.equal(res.increase, ic)
        assert torch.allclose(res.change, ch, atol=1e-6)
        assert torch.allclose(average_drop(model, x, cams), ad, atol=1e-4)
        assert torch.equal(increase_in_confidence(model, x, cams), ic)
        assert torch.allclose(confidence_change(model, x, cams), ch, atol=1e-6)


def test_hand_computed_value(region_setup):
    model, _, _, _, _ = region_setup
    x = torch.ones(1, 3, 12, 12)  # region sum 16 -> logit 0.2 * 16 - 2 = 1.2
    cams = torch.full((1, 12, 12), 0.5)  # -> logit 0.2 * 8 - 2 = -0.4
    res = confidence_scores(model, x, cams, targets=[0])
    y = 1 / (1 + torch.exp(torch.tensor(-1.2)))
    o = 1 / (1 + torch.exp(torch.tensor(0.4)))
    assert res.full.item() == pytest.approx(y.item(), abs=1e-6)
    assert res.average_drop.item() == pytest.approx(100 * (y - o).item() / y.item(), abs=1e-4)
    assert res.increase.item() == 0.0


def test_perfect_map_beats_inverted(region_setup):
    model, x, perfect, inverted, random = region_setup
    ad = {k: average_drop(model, x, m.clamp(0, 1), 0).mean().item() for k, m in
          dict(perfect=perfect, inverted=inverted, random=random).items()}
    assert ad["perfect"] < ad["random"] < ad["inverted"]
    assert ad["perfect"] < 15 and ad["inverted"] > 70


def test_pixel_space_explanation_map():
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 5, 5)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m = torch.tensor(mean)[:, None, None]
    s = torch.tensor(std)[:, None, None]
    x = (pixels - m) / s
    cams = torch.rand(2, 5, 5)
    e = explanation_map(x, cams, mean=mean, std=std)
    assert torch.allclose(e, (cams[:, None] * pixels - m) / s, atol=1e-6)
    assert torch.allclose(explanation_map(x, cams), cams[:, None] * x)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        explanation_map(x, cams * 3)
    with pytest.raises(ValueError, match="both mean and std"):
        explanation_map(x, cams, mean=mean)


def test_stateful_classes_accumulate(region_setup):
    model, x, perfect, _, _ = region_setup
    cams = perfect.clamp(0, 1)
    ad, ic, cc = AverageDrop(model), IncreaseInConfidence(model), ConfidenceChange(model)
    for metric in (ad, ic, cc):
        metric.update(x[:3], cams[:3])
        metric.update(x[3:], cams[3:])
    res = confidence_scores(model, x, cams)
    assert ad.compute().item() == pytest.approx(res.average_drop.mean().item(), abs=1e-5)
    assert ic.compute().item() == pytest.approx(res.increase.mean().item())
    assert cc.compute().item() == pytest.approx(res.change.mean().item(), abs=1e-6)
    assert AverageDrop.higher_is_better is False and IncreaseInConfidence.higher_is_better is True
