import pytest
import torch

from camlens.metrics import Deletion, Insertion, baseline_image, deletion, gaussian_blur, insertion, perturbation_curve


def _naive_curve(model, x, cams, cls, steps, base, mode):
    """Per image, per step: copy the image and overwrite pixels one by one in saliency order."""
    n, c, h, w = x.shape
    curves = torch.zeros(n, steps + 1)
    with torch.no_grad():
        for i in range(n):
            order = torch.argsort(cams[i].flatten(), descending=True).tolist()
            for k in range(steps + 1):
                count = round(k * h * w / steps)
                img = x[i].clone() if mode == "deletion" else base[i].clone()
                src = base[i] if mode == "deletion" else x[i]
                for p in order[:count]:
                    r, col = divmod(p, w)
                    img[:, r, col] = src[:, r, col]
                curves[i, k] = torch.softmax(model(img[None]), 1)[0, cls[i]]
    return curves


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_matches_naive_loop(region_setup, mode):
    model, x, _, _, random = region_setup
    x, cams = x[:3], random[:3]  # random maps have no ties
    res = perturbation_curve(model, x, cams, mode=mode, steps=6, batch_size=5, baseline="mean")
    base = baseline_image(x, "mean")
    ref = _naive_curve(model, x, cams, res.classes, 6, base, mode)
    assert torch.allclose(res.curve, ref, atol=1e-6)
    auc = (ref[:, 1:] + ref[:, :-1]).sum(1) / 2 / 6
    assert torch.allclose(res.auc, auc, atol=1e-6)
    assert res.fractions[0] == 0 and res.fractions[-1] == 1


def test_endpoints_are_image_and_baseline(region_setup):
    model, x, perfect, _, _ = region_setup
    res = deletion(model, x, perfect, 0, steps=4, baseline="zero")
    full = torch.softmax(model(x), 1)[:, 0]
    empty = torch.softmax(model(torch.zeros_like(x)), 1)[:, 0]
    assert torch.allclose(res.curve[:, 0], full, atol=1e-6)
    assert torch.allclose(res.curve[:, -1], empty, atol=1e-6)
    ins = insertion(model, x, perfect, 0, steps=4)  # from a blurred image
    assert torch.allclose(ins.curve[:, -1], full, atol=1e-6)
    blurred = torch.softmax(model(gaussian_blur(x)), 1)[:, 0]
    assert torch.allclose(ins.curve[:, 0], blurred, atol=1e-6)


def test_known_answer_ordering(region_setup):
    model, x, perfect, inverted, random = region_setup
    d = {k: deletion(model, x, m, 0, steps=12).auc.mean().item() for k, m in
         dict(perfect=perfect, inverted=inverted, random=random).items()}
    i = {k: insertion(model, x, m, 0, steps=12, baseline="zero").auc.mean().item() for k, m in
         dict(perfect=perfect, inverted=inverted, random=random).items()}
    assert d["perfect"] < d["random"] < d["inverted"]
    assert i["perfect"] > i["random"] > i["inverted"]


def test_blur_and_baselines():
    x = torch.full((1, 2, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(x), x, atol=1e-6)  # a constant image stays constant
    y = torch.rand(2, 3, 8, 8)
    assert torch.allclose(baseline_image(y, "mean")[:, :, 0, 0], y.mean(dim=(2, 3)))
    assert torch.equal(baseline_image(y, "zero"), torch.zeros_like(y))
    # the blur sums to one: a delta keeps its mass away from the border
    d = torch.zeros(1, 1, 21, 21)
    d[0, 0, 10, 10] = 1
    assert gaussian_blur(d).sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="baseline must be one of"):
        baseline_image(y, "noise")
    with pytest.raises(ValueError, match="positive odd int"):
        gaussian_blur(y, 4)


def test_errors_and_classes(region_setup):
    model, x, perfect, _, _ = region_setup
    with pytest.raises(ValueError, match="mode must be"):
        perturbation_curve(model, x, perfect, mode="both")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        deletion(model, x, perfect, steps=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        deletion(model, x, perfect, batch_size=0)
    model.train()
    dm = Deletion(model, steps=5)
    dm.update(x[:2], perfect[:2])
    dm.update(x[2:], perfect[2:])
    assert model.training  # flags restored
    ref = deletion(model, x, perfect, steps=5)
    assert dm.compute().item() == pytest.approx(ref.auc.mean().item(), abs=1e-6)
    assert dm.curves.shape == (6, 6)
    assert Deletion.higher_is_better is False and Insertion.higher_is_better is True
