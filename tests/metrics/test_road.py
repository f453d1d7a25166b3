
import pytest
import torch

from camlens.metrics import ROAD, ROADCombined, noisy_linear_impute, noisy_linear_impute_direct, road, road_combined

pytest.importorskip("scipy")


def test_single_pixel_is_weighted_mean_of_neighbours():
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5) ** 1.5
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True
    removed[0, 0, 0] = True  # corner: 3 neighbours, weights renormalised
    direct_w, diag_w = 1 / 6, 1 / 12
    v = x[0, 0]
    centre = direct_w * (v[1, 2] + v[3, 2] + v[2, 1] + v[2, 3]) + diag_w * (v[1, 1] + v[1, 3] + v[3, 1] + v[3, 3])
    corner = (direct_w * (v[0, 1] + v[1, 0]) + diag_w * v[1, 1]) / (2 * direct_w + diag_w)
    for solver in ("cg", "direct"):
        out = noisy_linear_impute(x, removed, noise=0, solver=solver, tol=1e-12)
        assert out[0, 0, 2, 2].item() == pytest.approx(centre.item(), abs=1e-9)
        assert out[0, 0, 0, 0].item() == pytest.approx(corner.item(), abs=1e-9)
        kept = ~removed[0]
        assert torch.equal(out[0, 0][kept], v[kept])


@pytest.mark.parametrize("shape", [(2, 3, 11, 9), (2, 2, 40, 36)])
def test_batched_cg_matches_direct_sparse_solve(shape):
    torch.manual_seed(0)
    x = torch.rand(shape, dtype=torch.float64)
    removed = torch.rand(shape[0], *shape[2:]) < 0.7
    removed[1, :, : shape[3] // 2] = True  # a large removed block too
    ref = noisy_linear_impute_direct(x, removed)
    cg = noisy_linear_impute(x, removed, noise=0, solver="cg", tol=1e-10)
    assert torch.allclose(cg, ref, atol=1e-7)
    cg32 = noisy_linear_impute(x.float(), removed, noise=0, solver="cg", tol=1e-5)
    assert (cg32.double() - ref).abs().max() < 2e-3


def test_noise_on_removed_pixels_only():
    x = torch.rand(1, 3, 30, 30, dtype=torch.float64)
    removed = torch.zeros(1, 30, 30, dtype=torch.bool)
    removed[0, 5:25, 5:25] = True
    clean = noisy_linear_impute(x, removed, noise=0)
    noisy = noisy_linear_impute(x, removed, noise=0.01, seed=3)
    diff = noisy - clean
    assert torch.equal(diff[:, :, ~removed[0]], torch.zeros_like(diff[:, :, ~removed[0]]))
    assert diff[:, :, removed[0]].std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.equal(noisy, noisy_linear_impute(x, removed, noise=0.01, seed=3))
    with pytest.raises(ValueError, match="at least one kept pixel"):
        noisy_linear_impute(x, torch.ones(1, 30, 30, dtype=torch.bool))
    with pytest.raises(ValueError, match="solver must be"):
        noisy_linear_impute(x, removed, solver="lu")


def test_cg_warns_when_not_converged():
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    removed = torch.rand(1, 40, 40) < 0.9
    with pytest.warns(UserWarning, match="did not reach tol"):
        noisy_linear_impute(x, removed, noise=0, solver="cg", tol=1e-14, max_iter=2)


def _object_images(region, n=6):
    """Bright object on the region, dim background: imputation cannot restore the object."""
    g = torch.Generator().manual_seed(2)
    x = 0.1 * torch.rand(n, 3, *region.shape, generator=g)
    return x + 1.5 * region.float()


def test_known_answer_morf_lerf(region_setup):
    model, _, perfect, inverted, _ = region_setup
    x = _object_images(model.region.bool())
    kw = dict(percentiles=[10, 30, 50], noise=0.0, batch_size=8)
    morf_good = road(model, x, perfect, 0, order="morf", **kw).score.mean()
    morf_bad = road(model, x, inverted, 0, order="morf", **kw).score.mean()
    lerf_good = road(model, x, perfect, 0, order="lerf", **kw).score.mean()
    lerf_bad = road(model, x, inverted, 0, order="lerf", **kw).score.mean()
    assert morf_good < morf_bad and lerf_good > lerf_bad
    combined, morf, lerf = road_combined(model, x, perfect, 0, **kw)
    assert torch.allclose(combined, lerf.score - morf.score)
    assert morf.curve.shape == (6, 3) and morf.percentiles == pytest.approx([10, 30, 50])
    assert not morf.higher_is_better and lerf.higher_is_better


def test_road_curve_matches_naive(region_setup):
    model, x, _, _, random = region_setup
    res = road(model, x[:2], random[:2], 0, order="morf", percentiles=[25, 50], noise=0.0, batch_size=3)
    for i in range(2):
        order = torch.argsort(random[i].flatten(), descending=True)
        for j, p in enumerate((0.25, 0.5)):
            removed = torch.zeros(144, dtype=torch.bool)
            removed[order[: round(p * 144)]] = True
            img = noisy_linear_impute_direct(x[i : i + 1], removed.reshape(1, 12, 12))
            prob = torch.softmax(model(img), 1)[0, 0]
            assert res.curve[i, j].item() == pytest.approx(prob.item(), abs=1e-5)


def test_classes(region_setup):
    model, _, perfect, _, _ = region_setup
    x = _object_images(model.region.bool())
    m = ROAD(model, order="lerf", percentiles=[20, 60], noise=0.0)
    assert m.higher_is_better is True and ROAD(model).higher_is_better is False
    m.update(x[:3], perfect[:3])
    m.update(x[3:], perfect[3:])
    assert m.curves.shape == (6, 2)
    c = ROADCombined(model, percentiles=[20], noise=0.0)
    c.update(x, perfect)
    assert c.compute().item() > 0
    with pytest.raises(ValueError, match="order must be"):
        road(model, x, perfect, order="middle")
    with pytest.raises(ValueError, match="percent values"):
        road(model, x, perfect, percentiles=[0])


def test_imputation_lives_in_its_own_module_and_names_its_solvers(monkeypatch):
    import sys

    from camlens.errors import DependencyError
    from camlens.metrics import imputation

    assert imputation.noisy_linear_impute is noisy_linear_impute
    assert imputation.noisy_linear_impute_direct is noisy_linear_impute_direct
    assert imputation.SOLVERS == ("auto", "cg", "direct")
    x = torch.rand(1, 1, 6, 6)
    removed = torch.zeros(1, 6, 6, dtype=torch.bool)
    removed[0, 2:4, 2:4] = True
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)  # scipy not installed
    monkeypatch.setitem(sys.modules, "scipy.sparse.linalg", None)
    with pytest.raises(DependencyError, match="pip install scipy.*solver='cg'"):
        noisy_linear_impute_direct(x, removed)
    assert noisy_linear_impute(x, removed, noise=0.0).shape == x.shape  # "auto" falls back to CG
